"""What a bench instance is, as a digest (its number, image name and bytes, annotation index, text, polygon):
infer.py stamps it into every ``local/<i>.png`` as a PNG text chunk and regenerates exactly the items whose key
changed, so a resumed run never keeps an output under another input's label."""
from __future__ import annotations

import hashlib
import json
from typing import Optional

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from textssr.data import SkipSample
from textssr.data.fingerprint import image_digest


KEY_CHUNK = "textssr-instance"  # the PNG text chunk holding an instance key (infer's local/<i>.png)


def instance_key(dataset, index: int, number: int) -> str:
    """The digest of dataset instance ``index`` (bench number ``number``); any change to it means another crop."""
    info = dataset.instance_info(index)
    try:
        polygon = dataset.polygon(index)
    except SkipSample:  # unreadable: the instance will be skipped when built
        polygon = np.zeros((0, 2))
    record = [int(number), info["img_name"], int(info["ann_index"]), info["text"],
              np.asarray(polygon, dtype=np.float64).round(6).tolist(), image_digest(dataset, index)]
    return hashlib.sha256(json.dumps(record, ensure_ascii=False).encode("utf-8")).hexdigest()


def key_chunk(key: Optional[str]) -> Optional[PngInfo]:
    """The PNG text chunk that stamps ``key`` into an image (None without a key)."""
    if not key:
        return None
    info = PngInfo()
    info.add_text(KEY_CHUNK, key)
    return info


def stamped_key(png_path: str) -> Optional[str]:
    """The instance key stamped into ``png_path``, None when it has none (or is unreadable)."""
    try:
        with Image.open(png_path) as image:
            return image.text.get(KEY_CHUNK)
    except (OSError, ValueError):
        return None
