"""Draw the README's before/after figure of edit.py: imgs/edit_before_after.png.

    python imgs/draw_edit_figure.py [--data ../shared/data/icdar15_toy] [--out imgs/edit_before_after.png] \
        [--cfg-options pretrained_vae=model/tiny/vae_ft pretrained_unet=model/tiny/step2]

Runs ``edit.py`` exactly as a user would (two regions of one ICDAR 2015 photo in one call, the tiny demo's
checkpoints by default: run ``make demo`` first), then shows the photo before and after, and each region zoomed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "icdar15_toy"
PHOTO = "img_9.jpg"
# (polygon as gt_img_9.txt has it, the word there, the new word)
EDITS = (("913,515,1068,526,1081,595,921,578", "STAGE", "MUSIC"),
         ("344,206,384,207,381,228,342,227", "EXIT", "OPEN"))
ZOOM_MARGIN = 0.6  # context around a region in its zoomed view, as a fraction of the region's larger side


def run_edit(photo: Path, out: Path, cfg_options) -> None:
    command = [sys.executable, str(REPO / "edit.py"), "--image", str(photo), "--out", str(out)]
    for polygon, _, new in EDITS:
        command += ["--polygon", polygon, "--text", new]
    if cfg_options:
        command += ["--cfg-options"] + list(cfg_options)
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def zoom_box(polygon: str, shape) -> tuple:
    points = np.asarray([float(v) for v in polygon.split(",")]).reshape(-1, 2)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    margin = ZOOM_MARGIN * max(x1 - x0, y1 - y0)
    height, width = shape[:2]
    return (int(max(0, x0 - margin)), int(max(0, y0 - margin)), int(min(width, x1 + margin)),
            int(min(height, y1 + margin)))


def draw(before: np.ndarray, after: np.ndarray, out: Path) -> None:
    figure = plt.figure(figsize=(12, 5.6), dpi=110)
    grid = figure.add_gridspec(2, 2 * len(EDITS), height_ratios=[2.2, 1], hspace=0.12, wspace=0.06)
    half = len(EDITS)
    changes = ", ".join(f"{old} → {new}" for _, old, new in EDITS)
    for k, (picture, title) in enumerate(((before, f"before: {PHOTO} (ICDAR 2015)"), (after, f"after: {changes}"))):
        ax = figure.add_subplot(grid[0, k * half:(k + 1) * half])
        ax.imshow(picture)
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    for k, (polygon, old, new) in enumerate(EDITS):
        x0, y0, x1, y1 = zoom_box(polygon, before.shape)
        for j, (picture, label) in enumerate(((before, old), (after, new))):
            ax = figure.add_subplot(grid[1, 2 * k + j])
            ax.imshow(picture[y0:y1, x0:x1], interpolation="lanczos")
            ax.set_title(f"{'before' if j == 0 else 'after'}: {label}", fontsize=10)
            ax.axis("off")
    command = f"python edit.py --image {PHOTO} " + " ".join(f"--polygon {p} --text {n}" for p, _, n in EDITS)
    figure.text(0.5, 0.04, command + "   (tiny demo checkpoints, 64 px, CPU)", ha="center", fontsize=8,
                family="monospace")
    figure.savefig(out, bbox_inches="tight", facecolor="white")
    print(f"wrote {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "imgs" / "edit_before_after.png")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="passed to edit.py (default: its config, configs/tiny/infer_cfg.py)")
    args = parser.parse_args(argv)
    photo = args.data.resolve() / PHOTO
    if not photo.is_file():
        sys.exit(f"error: {photo} not found: give the icdar15_toy folder with --data")
    with tempfile.TemporaryDirectory() as tmp:
        edited = Path(tmp) / "edited.png"
        run_edit(photo, edited, args.cfg_options)
        before = np.asarray(Image.open(photo).convert("RGB"))
        after = np.asarray(Image.open(edited).convert("RGB"))
    draw(before, after, args.out)


if __name__ == "__main__":
    main()
