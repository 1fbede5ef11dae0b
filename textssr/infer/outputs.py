"""The output folder of ``infer.py`` (docs/architecture.md, "Output folder of infer.py").

    <out>/local/<i>.png    the whole R×R generated region
    <out>/region/<i>.png   the generated region cut to the bbox of the mask's 0-pixels (text area)
    <out>/gt/<i>.png       the same bbox cut from the real R×R crop (the OCR ceiling for eval.py)
    <out>/labels.json      {"<i>.png": text}
    <out>/instances.json   [{"file", "text", "language", "img_name", "ann_index"}]
    <out>/meta.json        settings, checkpoints, versions, timings, {"skipped": {reason: n}}

``<i>`` is the instance's number in the bench (annotations counted in JSON order), so numbering is
stable: a skipped instance leaves a gap and a resumed run writes the same names. An item is finished
when its three PNGs exist; every file is written under a temporary name and renamed, so a killed run
never leaves a half-written image behind.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Tuple

import numpy as np
from PIL import Image

LOCAL_DIR, REGION_DIR, GT_DIR = "local", "region", "gt"
IMAGE_DIRS = (LOCAL_DIR, REGION_DIR, GT_DIR)
LABELS_FILE, INSTANCES_FILE, META_FILE = "labels.json", "instances.json", "meta.json"
TMP_SUFFIX = ".tmp"


def file_name(number: int) -> str:
    """The image file name of bench instance ``number`` (the same in local/, region/ and gt/)."""
    return f"{number}.png"


def make_dirs(out_dir: str) -> None:
    for sub in IMAGE_DIRS:
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)


def is_finished(out_dir: str, number: int) -> bool:
    """True when all three images of instance ``number`` were written completely."""
    name = file_name(number)
    return all(os.path.isfile(os.path.join(out_dir, sub, name)) for sub in IMAGE_DIRS)


def clean_item(out_dir: str, number: int) -> bool:
    """Delete the temporary files a killed run left for instance ``number`` and, when the item is unfinished,
    its images too (a subset of them may exist). Returns whether the item is finished."""
    name = file_name(number)
    for sub in IMAGE_DIRS:
        tmp = os.path.join(out_dir, sub, name + TMP_SUFFIX)
        if os.path.exists(tmp):
            os.remove(tmp)
    finished = is_finished(out_dir, number)
    if not finished:
        for sub in IMAGE_DIRS:
            path = os.path.join(out_dir, sub, name)
            if os.path.exists(path):
                os.remove(path)
    return finished


def save_png(image: np.ndarray, path: str) -> None:
    """Write uint8 RGB (H, W, 3) as PNG, atomically (temporary name, then rename)."""
    tmp = path + TMP_SUFFIX
    Image.fromarray(image, "RGB").save(tmp, format="PNG")
    os.replace(tmp, path)


def write_json(obj, path: str) -> None:
    """Write UTF-8 JSON (CJK kept readable), atomically."""
    tmp = path + TMP_SUFFIX
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, default=str)
    os.replace(tmp, path)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1], (H, W, 3) → uint8 (H, W, 3), rounded."""
    return np.clip(np.round(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def crop_box(image: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Cut (H, W, C) to ``box`` = (x0, y0, x1, y1), exclusive ends."""
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def write_item(out_dir: str, number: int, local: np.ndarray, gt: np.ndarray, box: Tuple[int, int, int, int]) -> None:
    """Write instance ``number``: ``local`` (generated) and ``gt`` (real) are uint8 (R, R, 3); region/ and gt/
    hold them cut to ``box``. local/ is written last, so a present local/ image means the other two exist."""
    name = file_name(number)
    save_png(np.ascontiguousarray(crop_box(local, box)), os.path.join(out_dir, REGION_DIR, name))
    save_png(np.ascontiguousarray(crop_box(gt, box)), os.path.join(out_dir, GT_DIR, name))
    save_png(local, os.path.join(out_dir, LOCAL_DIR, name))


def write_index(out_dir: str, records: Iterable[dict]) -> Tuple[int, int]:
    """Write labels.json and instances.json from ``records`` (dicts with number, text, language, img_name,
    ann_index), sorted by number. Returns (#labels, #instances) — always equal."""
    rows = sorted(records, key=lambda r: r["number"])
    labels = {file_name(r["number"]): r["text"] for r in rows}
    instances = [dict(file=file_name(r["number"]), text=r["text"], language=r.get("language"),
                      img_name=r["img_name"], ann_index=r["ann_index"]) for r in rows]
    write_json(labels, os.path.join(out_dir, LABELS_FILE))
    write_json(instances, os.path.join(out_dir, INSTANCES_FILE))
    return len(labels), len(instances)


def read_meta(out_dir: str):
    """meta.json of a previous run in ``out_dir``, or None."""
    path = os.path.join(out_dir, META_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
