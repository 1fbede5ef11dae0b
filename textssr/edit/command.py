"""edit.py: the whole photo in, its text region(s) repainted, the whole photo out.

    python edit.py --image PHOTO --polygon x1,y1,...,x4,y4 --text NEW [--out OUT.png] [--num-variants N]
    python edit.py --image PHOTO --find OLD --text NEW         # the line PP-OCRv4 reads as OLD
    python edit.py --list PHOTO                                # the detected lines, with their polygons

``--polygon``/``--find`` and ``--text`` repeat: the i-th region gets the i-th text, applied in turn. Every input is
checked before the models load; a mistake is one line ``error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

from textssr.config import ConfigError, add_config_args
from textssr.config.checks import check_output_dir
from textssr.infer.settings import InferSettings
from textssr.edit.editor import Edit, Editor, describe_repaint
from textssr.edit.lines import LineFinder, best_line, describe, match_score
from textssr.edit.region import DILATE_PX, check_text, encode_image, parse_polygon_arg, polygon_arg, read_photo

DEFAULT_CONFIG = "configs/tiny/infer_cfg.py"
OUT_SUFFIX = "_edited.png"


class RegionAction(argparse.Action):
    """Collects ``--polygon`` and ``--find`` in command-line order as (flag, value) pairs."""

    def __call__(self, parser, namespace, values, option_string=None):
        regions = list(getattr(namespace, self.dest, None) or [])
        regions.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, regions)


def build_parser(description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--image", metavar="PHOTO", help="the photo to edit (JPEG, PNG, ...)")
    parser.add_argument("--polygon", action=RegionAction, dest="regions", metavar="x1,y1,...,x4,y4",
                        help="corners of the text region, photo pixels (repeatable)")
    parser.add_argument("--find", action=RegionAction, dest="regions", metavar="OLD",
                        help="the text line that reads OLD (PP-OCRv4 detection + recognition; repeatable)")
    parser.add_argument("--text", action="append", default=[], metavar="NEW", help="the new text (one per region)")
    parser.add_argument("--out", help=f"output image (PNG; default <photo name>{OUT_SUFFIX} here); with several "
                        "variants <out>_v<k>.png")
    parser.add_argument("--num-variants", type=int, default=1, metavar="N",
                        help="N edited photos; variant k draws its noise from (seed, k)")
    parser.add_argument("--dilate", type=int, default=DILATE_PX, metavar="PX",
                        help=f"grow the pasted area this many pixels around the polygon, fading out (default "
                             f"{DILATE_PX}; 0 = the polygon exactly)")
    parser.add_argument("--list", metavar="PHOTO", help="print the photo's detected text lines and exit")
    return add_config_args(parser, DEFAULT_CONFIG)


def check_demo_models(cfg, config_path: str) -> None:
    """With the default config, say how to get its checkpoints when they are not there (a fresh clone)."""
    if os.path.normpath(config_path) != os.path.normpath(DEFAULT_CONFIG):
        return
    missing = [getattr(cfg, k) for k in ("pretrained_vae", "pretrained_unet") if not os.path.exists(str(getattr(cfg, k)))]
    if missing:
        raise ConfigError(f"the tiny demo's checkpoints are not there ({', '.join(map(str, missing))}): run `make "
                          "demo` first, or name trained ones with --config/--cfg-options pretrained_vae=... "
                          "pretrained_unet=...")


def output_paths(out: str, variants: int) -> List[str]:
    """``out`` for one variant, else ``<stem>_v<k><ext>`` for k = 0 … variants − 1."""
    if variants == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}_v{k}{ext}" for k in range(variants)]


def list_lines(path: str, finder: Optional[LineFinder] = None) -> int:
    """Print each detected line of the photo at ``path`` (reading, confidence, polygon); 1 when none is found."""
    lines = (finder or LineFinder()).detect(read_photo(path))
    if not lines:
        print(f"no text line found in {path}", file=sys.stderr)
        return 1
    for line in lines:
        print(describe(line))
    return 0


def resolve_edits(regions: Sequence[Tuple[str, str]], texts: Sequence[str], photo, image: str,
                  finder: Optional[LineFinder] = None) -> List[Edit]:
    """Pair the regions with the texts; ``--find`` regions are looked up among the photo's detected lines (one
    detection for all of them)."""
    if not regions:
        raise ConfigError("no region given; add --polygon x1,y1,...,x4,y4 or --find OLD (see edit.py --list PHOTO)")
    if len(regions) != len(texts):
        raise ConfigError(f"{len(regions)} region(s) but {len(texts)} --text; give one --text NEW per --polygon/--find")
    lines = None
    edits = []
    for (flag, value), text in zip(regions, texts):
        if flag == "polygon":
            edits.append(Edit(parse_polygon_arg(value), text))
            continue
        if lines is None:
            lines = (finder or LineFinder()).detect(photo)
        line = best_line(lines, value, where=image)
        print(f"--find {value!r}: {line.text!r} (NED {match_score(line.text, value):.2f}, confidence "
              f"{line.confidence:.2f}) at {polygon_arg(line.polygon)}")
        edits.append(Edit(line.polygon, text))
    return edits


def write_image(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a killed run leaves no half-written image."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        if args.image or args.regions or args.text:
            raise ConfigError("--list PHOTO only lists lines; run it without --image/--polygon/--find/--text")
        return list_lines(args.list)
    if not args.image:
        raise ConfigError("no photo given; add --image PHOTO (or --list PHOTO to see its text lines)")
    cfg = InferSettings.load(args.config, args.cfg_options)
    check_demo_models(cfg, args.config)
    photo = read_photo(args.image)
    out = args.out or os.path.splitext(os.path.basename(args.image))[0] + OUT_SUFFIX
    Editor.check_sampling(args.num_variants, cfg.seed, cfg.num_inference_steps, cfg.scheduler)
    paths = output_paths(out, args.num_variants)
    encode_image(photo[:1, :1], out)  # an extension OpenCV cannot write fails now, not after generating
    check_output_dir(os.path.dirname(os.path.abspath(out)), "--out")
    editor = Editor(cfg, dilate=args.dilate)
    for text in args.text:  # before --find runs the OCR
        check_text(text, editor.font_path)
        if editor.truncation_note(text):
            print(f"note: {editor.truncation_note(text)}")
    edits = resolve_edits(args.regions or [], args.text, photo, args.image)
    editor.check(photo, edits)
    variants = editor.edit(photo, edits, variants=args.num_variants)
    for path, variant in zip(paths, variants):
        write_image(path, encode_image(variant.photo, path))
    height, width = photo.shape[:2]
    print(f"wrote {', '.join(paths)} ({width}x{height}, seed {cfg.seed}, {cfg.scheduler} x "
          f"{cfg.num_inference_steps} steps)")
    for repaint in variants[0].repaints:
        print(f"  repainted {describe_repaint(repaint)}")
    return 0
