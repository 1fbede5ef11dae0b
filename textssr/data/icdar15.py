"""Read ICDAR 2013 / 2015 annotations as AnyWord entries, and convert them to AnyWord JSON.

ICDAR 2015 Incidental Scene Text gives, for image ``img_N.jpg``, a file ``gt_img_N.txt`` with one word per line:
``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` (the transcription may contain commas, a file may start with a UTF-8 BOM,
``###`` marks an unreadable word). ICDAR 2013 Focused Scene Text writes an axis-aligned box and a quoted word,
``left, top, right, bottom, "word"`` (test set) or ``left top right bottom "word"`` (training set).
:func:`icdar_entries` reads a folder of them (synthesize.py reads such a folder directly); the converter writes
AnyWord JSON (method.md §2), ``language`` guessed per word.

    python -m textssr.data.icdar15 --gt-dir ch4_test_gt --image-dir ch4_test_images --out ic15/test.json
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from typing import List, Optional, Sequence, Tuple

from textssr.data.errors import DataError
from textssr.data.photos import PHOTO_SUFFIXES, natural_key
from textssr.utils.jsonio import write_json

GT_PATTERN = re.compile(r"^gt_(.+)\.txt$")
IMAGE_SUFFIXES = PHOTO_SUFFIXES + tuple(s.upper() for s in PHOTO_SUFFIXES)  # tried in this order
DONT_CARE = "###"
IC13_LINE = re.compile(r'^\s*(-?\d+)\s*,?\s+(-?\d+)\s*,?\s+(-?\d+)\s*,?\s+(-?\d+)\s*,?\s*"(.*)"\s*$')
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def guess_language(text: str) -> str:
    """"Chinese" when ``text`` holds a CJK character, else "Latin" (AnyWord's two language labels)."""
    return "Chinese" if CJK.search(text) else "Latin"


def parse_gt_line(line: str) -> Optional[Tuple[List[List[int]], str]]:
    """(polygon, text) of one annotation line (ICDAR 2015's quadrilateral or ICDAR 2013's box), None when the line
    is malformed."""
    box = IC13_LINE.match(line)
    if box:
        left, top, right, bottom = (int(v) for v in box.groups()[:4])
        return [[left, top], [right, top], [right, bottom], [left, bottom]], box.group(5)
    parts = line.split(",", 8)
    if len(parts) != 9:
        return None
    try:
        coords = [float(v) for v in parts[:8]]
    except ValueError:
        return None
    coords = [int(v) if v.is_integer() else v for v in coords]
    return [[coords[i], coords[i + 1]] for i in range(0, 8, 2)], parts[8]


def read_gt_file(path: str, counts: Counter) -> List[dict]:
    """AnyWord annotations of one gt file; ``###`` words and malformed lines are counted, not kept."""
    annotations = []
    with open(path, encoding="utf-8-sig") as f:  # utf-8-sig strips the BOM ICDAR files start with
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parsed = parse_gt_line(line)
            if parsed is None:
                counts["malformed_line"] += 1
                continue
            polygon, text = parsed
            if text == DONT_CARE:
                counts["dont_care"] += 1
                continue
            annotations.append({"polygon": polygon, "text": text, "language": guess_language(text)})
    return annotations


def find_image(image_dir: str, stem: str) -> Optional[str]:
    """The image file name of ``stem`` in ``image_dir`` (the first of IMAGE_SUFFIXES present), None without one."""
    return next((stem + s for s in IMAGE_SUFFIXES if os.path.isfile(os.path.join(image_dir, stem + s))), None)


def icdar_entries(gt_dir: str, image_dir: Optional[str] = None) -> Tuple[List[dict], Counter]:
    """AnyWord ``data_list`` entries of every ``gt_*.txt`` of ``gt_dir`` whose image is in ``image_dir`` (default:
    ``gt_dir``), in natural order, and what was left out {reason: count} (``dont_care``, ``malformed_line``,
    ``image_missing``)."""
    image_dir = image_dir or gt_dir
    for key, folder in (("--gt-dir", gt_dir), ("--image-dir", image_dir)):
        if not os.path.isdir(folder):
            raise DataError(f"{key} {folder}: no such folder")
    gt_files = sorted((n for n in os.listdir(gt_dir) if GT_PATTERN.match(n)), key=natural_key)
    if not gt_files:
        raise DataError(f"{gt_dir} holds no gt_<image>.txt file (ICDAR 2013/2015 annotations)")
    counts: Counter = Counter()
    data_list = []
    for name in gt_files:
        stem = GT_PATTERN.match(name).group(1)
        img_name = find_image(image_dir, stem)
        annotations = read_gt_file(os.path.join(gt_dir, name), counts)
        if img_name is None:
            counts["image_missing"] += len(annotations)
            continue
        data_list.append({"img_name": img_name, "annotations": annotations})
    return data_list, counts


def convert_icdar15(gt_dir: str, image_dir: Optional[str], out_json: str, data_root: Optional[str] = None) -> dict:
    """Write AnyWord JSON for every ``gt_*.txt`` of ``gt_dir`` whose image is in ``image_dir`` (default: ``gt_dir``);
    ``data_root`` defaults to ``image_dir`` relative to the output's folder. Returns a summary: images, words,
    skipped {reason: count}, out, data_root."""
    image_dir = image_dir or gt_dir
    data_list, counts = icdar_entries(gt_dir, image_dir)
    out_dir = os.path.dirname(os.path.abspath(out_json))
    os.makedirs(out_dir, exist_ok=True)
    root = data_root if data_root is not None else os.path.relpath(os.path.abspath(image_dir), out_dir)
    write_json({"data_root": root, "data_list": data_list}, out_json)
    words = sum(len(e["annotations"]) for e in data_list)
    return {"images": len(data_list), "words": words, "skipped": dict(counts), "out": out_json, "data_root": root}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m textssr.data.icdar15", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt-dir", required=True, help="folder of gt_img_N.txt files")
    parser.add_argument("--image-dir", default=None, help="folder of img_N.jpg (default: --gt-dir)")
    parser.add_argument("--out", required=True, help="AnyWord JSON to write")
    parser.add_argument("--data-root", default=None,
                        help="data_root to write (default: the image folder relative to the output's folder)")
    args = parser.parse_args(argv)
    try:
        summary = convert_icdar15(args.gt_dir, args.image_dir, args.out, args.data_root)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{n} {k}" for k, n in sorted(summary["skipped"].items())) or "none"
    print(f"wrote {summary['out']}: {summary['images']} images, {summary['words']} words "
          f"(data_root {summary['data_root']}); skipped: {skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
