"""The output folder of ``infer.py`` (docs/architecture.md, "Output folder of infer.py").

    <out>/local/<i>.png    the whole R×R generated region
    <out>/region/<i>.png   the generated region cut to the bbox of the mask's 0-pixels (text area)
    <out>/gt/<i>.png       the same bbox cut from the real R×R crop (the OCR ceiling for eval.py)
    <out>/labels.json      {"<i>.png": text}
    <out>/instances.json   [{"file", "text", "language", "img_name", "ann_index"}]
    <out>/meta.json        settings, checkpoints, versions, timings, {"skipped": {reason: n}}

``<i>`` is the instance's number in the bench (annotations counted in JSON order): a skipped instance leaves a gap
and a resumed run writes the same names. An item is finished when its three PNGs exist; each file is written under
a temporary name and renamed, so a killed run never leaves a half-written image. ``local/<i>.png`` (written last)
carries the instance's *key* (:func:`textssr.data.fingerprint.instance_key`) in a PNG text chunk, so a rerun after the bench
changed regenerates exactly the items whose instance changed instead of keeping a crop under another's label.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional, Tuple

import numpy as np
from PIL import Image

from textssr.utils.jsonio import read_json, write_json
from textssr.eval.evaluate import GT_DIR, INSTANCES_FILE, LABELS_FILE, REGION_DIR
from textssr.generation import crop_box
from textssr.infer.instance_key import key_chunk, stamped_key

LOCAL_DIR, META_FILE = "local", "meta.json"  # the rest of the layout is what eval.py reads: named there
IMAGE_DIRS = (LOCAL_DIR, REGION_DIR, GT_DIR)
TMP_SUFFIX = ".tmp"


def file_name(number: int) -> str:
    """The image file name of bench instance ``number`` (the same in local/, region/ and gt/)."""
    return f"{number}.png"


def written_numbers(out_dir: str) -> List[int]:
    """The instance numbers that have any file (finished or not) in ``out_dir``."""
    found = set()
    for sub in IMAGE_DIRS:
        folder = os.path.join(out_dir, sub)
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            stem = name.removesuffix(TMP_SUFFIX)
            if stem.endswith(".png") and stem[:-4].isdigit():
                found.add(int(stem[:-4]))
    return sorted(found)


def item_paths(out_dir: str, number: int) -> List[str]:
    """The image files of instance ``number`` (local/, region/, gt/)."""
    return [os.path.join(out_dir, sub, file_name(number)) for sub in IMAGE_DIRS]


def remove_item(out_dir: str, number: int, finished_too: bool = True) -> None:
    """Delete every file of instance ``number`` (only its temporary ones without ``finished_too``)."""
    for path in item_paths(out_dir, number):
        for p in (path, path + TMP_SUFFIX) if finished_too else (path + TMP_SUFFIX,):
            if os.path.exists(p):
                os.remove(p)


def make_dirs(out_dir: str) -> None:
    for sub in IMAGE_DIRS:
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)


def is_finished(out_dir: str, number: int) -> bool:
    """True when all three images of instance ``number`` were written completely."""
    return all(os.path.isfile(p) for p in item_paths(out_dir, number))


def clean_item(out_dir: str, number: int, key: Optional[str] = None) -> bool:
    """Delete the temporary files a killed run left for instance ``number`` and, when the item is unfinished — or
    was written for another instance than ``key`` says —, its images too. Returns whether the item is finished
    (and, with ``key``, is this instance's)."""
    remove_item(out_dir, number, finished_too=False)
    finished = is_finished(out_dir, number) and (key is None or stamped_key(item_paths(out_dir, number)[0]) == key)
    if not finished:
        remove_item(out_dir, number)
    return finished


def save_png(image: np.ndarray, path: str, info=None) -> None:
    """Write uint8 RGB (H, W, 3) as PNG, atomically (temporary name, then rename); ``info``: its PngInfo chunks."""
    Image.fromarray(image, "RGB").save(path + TMP_SUFFIX, format="PNG", pnginfo=info)
    os.replace(path + TMP_SUFFIX, path)


def write_item(out_dir: str, number: int, local: np.ndarray, gt: np.ndarray, box: Tuple[int, int, int, int],
               key: Optional[str] = None) -> None:
    """Write instance ``number``: ``local`` (generated) and ``gt`` (real) are uint8 (R, R, 3); region/ and gt/
    hold them cut to ``box``. local/ is written last (carrying ``key``), so a present local/ image means the
    other two exist."""
    name = file_name(number)
    save_png(np.ascontiguousarray(crop_box(local, box)), os.path.join(out_dir, REGION_DIR, name))
    save_png(np.ascontiguousarray(crop_box(gt, box)), os.path.join(out_dir, GT_DIR, name))
    save_png(local, os.path.join(out_dir, LOCAL_DIR, name), key_chunk(key))


def write_index(out_dir: str, items: Iterable[Tuple[int, dict]]) -> int:
    """Write labels.json and instances.json, sorted by number, from ``items``: (number, the dataset's
    ``instance_info``) of the finished instances. Returns how many."""
    rows = sorted(items, key=lambda item: item[0])
    labels = {file_name(n): info["text"] for n, info in rows}
    instances = [dict(file=file_name(n), text=info["text"], language=info.get("language"), img_name=info["img_name"],
                      ann_index=info["ann_index"]) for n, info in rows]
    write_json(labels, os.path.join(out_dir, LABELS_FILE))
    write_json(instances, os.path.join(out_dir, INSTANCES_FILE))
    return len(labels)


def read_meta(out_dir: str):
    """meta.json of a previous run in ``out_dir``, or None."""
    path = os.path.join(out_dir, META_FILE)
    return read_json(path) if os.path.isfile(path) else None
