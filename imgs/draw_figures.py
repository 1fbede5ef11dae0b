"""Draw the README's figure of the model's inputs: imgs/conditioning.png.

    python imgs/draw_figures.py [--data ../shared/data/icdar15_toy] [--word Carpark] [--out imgs/conditioning.png]

One real word of ICDAR 2015 goes through the data layer (``textssr.data.AnyWordDataset``, method.md §3) and every
tensor the diffusion model sees is shown as it is: the region ``image``, the ``mask`` (0 = text area to
generate), the ``masked_image``, the ``glyph`` and some ``ttf_img`` channels; beneath them, how they enter
the UNet — the 13-channel ``conv_in`` concat [noisy latent 4 | masked latent 4 | glyph latent 4 | mask 1] and
the TTF ViT whose (65, 1024) tokens are the cross-attention context.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "icdar15_toy"
RESOLUTION = 256  # the paper's (method.md §3); the figure shows the tensors at full size
TTF_CHANNELS_SHOWN = 5
CONTEXT_ZOOM = 3.0  # characters shown, then one unused channel
SEED = 3407


def build_sample(data_dir: Path, word: str):
    """(photo RGB uint8, polygon (N, 2), sample dict) for the first instance of ``word`` in the ICDAR15 folder."""
    from textssr.data import AnyWordDataset
    from textssr.data.icdar15 import convert_icdar15

    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "icdar15.json"
        convert_icdar15(str(data_dir), None, str(json_path), data_root=str(data_dir.resolve()))
        anyword = json.loads(json_path.read_text(encoding="utf-8"))
        dataset = AnyWordDataset(str(json_path), seed=SEED, resolution=RESOLUTION)
        matches = [i for i in range(len(dataset)) if dataset.instance_info(i)["text"] == word]
        if not matches:
            sys.exit(f"error: no instance reads {word!r} in {data_dir}: pick another --word")
        info = dataset.instance_info(matches[0])
        sample = dataset[matches[0]]
    entry = next(e for e in anyword["data_list"] if e["img_name"] == info["img_name"])
    photo = np.asarray(Image.open(data_dir / entry["img_name"]).convert("RGB"))
    polygon = np.asarray(entry["annotations"][info["ann_index"]]["polygon"], np.float32)
    return photo, polygon, sample


def to_rgb(tensor, value_range):
    """(C, H, W) tensor in ``value_range`` → (H, W, 3) float in [0, 1] for imshow."""
    low, high = value_range
    array = (tensor.detach().float().cpu().numpy() - low) / (high - low)
    array = np.clip(array, 0, 1).transpose(1, 2, 0)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def panel(ax, picture, title, note):
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=11, fontweight="bold", family="monospace")
    ax.set_xlabel(note, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def box(ax, xy, size, text, colour):
    ax.add_patch(FancyBboxPatch(xy, *size, boxstyle="round,pad=0.01,rounding_size=0.015", fc=colour, ec="0.25",
                                lw=1))
    ax.text(xy[0] + size[0] / 2, xy[1] + size[1] / 2, text, ha="center", va="center", fontsize=8.5)


def arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.2, color="0.25", zorder=5))


def draw_diagram(ax, text: str, max_len: int, ttf_size: int):
    """The conditioning path, in axes coordinates [0, 1]²."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    slots = [("noisy latent  z_t\n4 ch", "#f4cccc"), ("VAE(masked_image)\n4 ch", "#d9ead3"),
             ("VAE(glyph)\n4 ch", "#cfe2f3"), ("mask, nearest-\nresized  1 ch", "#fff2cc")]
    widths = [0.16, 0.16, 0.16, 0.07]
    x = 0.02
    for (label, colour), width in zip(slots, widths):
        box(ax, (x, 0.62), (width * 0.97, 0.26), label, colour)
        x += width
    ax.text(0.02 + sum(widths) / 2, 0.93, "conv_in: 13 channels, concatenated in this order (latent size R/8)",
            ha="center", fontsize=9, fontweight="bold")
    arrow(ax, (0.02 + sum(widths) + 0.005, 0.75), (0.62, 0.75))
    box(ax, (0.62, 0.40), (0.17, 0.48), "UNet2DCondition\n(SD 2.1, conv_in 13 ch)\n\npredicts v\n(v-prediction)",
        "#ead1dc")
    box(ax, (0.02, 0.08), (0.22, 0.3), f"ttf_img\n{max_len} × {ttf_size} × {ttf_size}\n(one character a channel)",
        "#eeeeee")
    arrow(ax, (0.245, 0.23), (0.30, 0.23))
    box(ax, (0.30, 0.08), (0.26, 0.3), f"TTF ViT (ttf_net)\npatch 8 → {(ttf_size // 8) ** 2} tokens + class token\n"
        "width 1024, depth 6, 8 heads", "#d9d2e9")
    arrow(ax, (0.565, 0.23), (0.60, 0.23))
    box(ax, (0.60, 0.08), (0.19, 0.2), f"{(ttf_size // 8) ** 2 + 1} × 1024 tokens\n= encoder_hidden_states",
        "#d9d2e9")
    arrow(ax, (0.70, 0.285), (0.70, 0.395))
    ax.text(0.715, 0.335, "cross-attention", fontsize=8, style="italic")
    arrow(ax, (0.795, 0.64), (0.84, 0.64))
    ax.text(0.85, 0.64, "denoised latent\n→ VAE decoder\n→ the region with\n" + repr(text) + " written in",
            fontsize=8.5, va="center")
    ax.text(0.85, 0.2, "no text prompt:\nthe characters are\nthe only text input", fontsize=8.5, va="center",
            style="italic")


def draw(photo, polygon, sample, out: Path) -> None:
    text = sample["text"]
    ttf = sample["ttf_img"]
    max_len, ttf_size = ttf.shape[0], ttf.shape[1]
    figure = plt.figure(figsize=(15, 9.5))
    grid = figure.add_gridspec(3, 6, height_ratios=[1.0, 0.62, 0.95], hspace=0.3, wspace=0.12)

    ax = figure.add_subplot(grid[0, 0:2])
    ax.imshow(photo)
    ax.add_patch(Polygon(polygon, closed=True, fill=False, ec="red", lw=1.5))
    # Zoom on the word: CONTEXT_ZOOM × its size around it, so that the polygon is visible.
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    half = CONTEXT_ZOOM * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax.set_xlim(max(cx - 1.6 * half, 0), min(cx + 1.6 * half, photo.shape[1]))
    ax.set_ylim(min(cy + half, photo.shape[0]), max(cy - half, 0))
    ax.set_title("photo + polygon (ICDAR 2015, zoomed)", fontsize=11, fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])

    resolution = sample["image"].shape[-1]
    panel(figure.add_subplot(grid[0, 2]), to_rgb(sample["image"], (-1, 1)), "image",
          f"square region around the word,\n(3, {resolution}, {resolution}) in [-1, 1]")
    panel(figure.add_subplot(grid[0, 3]), to_rgb(sample["mask"], (0, 1)), "mask",
          f"(1, {resolution}, {resolution});\n0 (black) = text area to generate")
    panel(figure.add_subplot(grid[0, 4]), to_rgb(sample["masked_image"], (-1, 1)), "masked_image",
          "image × mask: context only\n(text area = 0, mid grey)")
    panel(figure.add_subplot(grid[0, 5]), to_rgb(sample["glyph"], (0, 1)), "glyph",
          f"{text!r} in a plain font, warped onto\nthe mask's rotated rectangle; [0, 1]")

    gray_step = 128 // max_len
    shown = list(range(min(TTF_CHANNELS_SHOWN, len(text)))) + [max_len - 1]
    for column, channel in enumerate(shown):
        ax = figure.add_subplot(grid[1, column])
        label = (f"char {text[channel]!r}, gray {gray_step * channel}" if channel < len(text) else "unused: all 1.0")
        panel(ax, ttf[channel].detach().float().cpu().numpy(), f"ttf_img[{channel}]", label)

    draw_diagram(figure.add_subplot(grid[2, :]), text, max_len, ttf_size)
    figure.suptitle("TextSSR's inputs for one text region (method.md §3–4)", fontsize=14, fontweight="bold", y=0.95)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ICDAR 2015 folder (img_N.jpg + gt_img_N.txt)")
    parser.add_argument("--word", default="Carpark", help="the instance to show")
    parser.add_argument("--out", type=Path, default=REPO / "imgs" / "conditioning.png")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: ICDAR 2015 folder {args.data} not found: pass --data")
    draw(*build_sample(args.data, args.word), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
