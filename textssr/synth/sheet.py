"""The contact sheet of a synthesis run: each crop of the STR LMDB beside the real line it was made from, with the
target text and what PP-OCRv4 reads in the crop (the screening's reading, or read here when screening is off)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import cv2
import numpy as np

from textssr.data import SkipSample
from textssr.data.geometry import polygon_bbox
from textssr.eval.contact_sheet import SheetItem
from textssr.eval.ocr import Recognizer
from textssr.synth.str_lmdb import StrRecord, decode_image


def original_line(dataset, region: int) -> Optional[np.ndarray]:
    """RGB uint8 crop of region ``region``'s text box in its source image (None when it cannot be read)."""
    try:
        key = dataset._image_key(region)
        image, _ = dataset.images.load(key, f"region {region}")
    except (SkipSample, IndexError, KeyError):
        return None
    x0, y0, x1, y1 = polygon_bbox(dataset.polygon(region))
    crop = image[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if crop.size else None


def sheet_items(records: Sequence[StrRecord], dataset=None, recognizer: Optional[Recognizer] = None) -> List[SheetItem]:
    """One cell per record: the crop, its target, its PP-OCRv4 reading and, with ``dataset`` (the run's regions),
    the real line and the word that was there."""
    crops = [decode_image(r.image) for r in records]
    metas = [r.meta or {} for r in records]
    unread = [i for i, m in enumerate(metas) if m.get("ocr_text") is None]
    readings = {i: m.get("ocr_text") for i, m in enumerate(metas)}
    if unread:
        recognizer = recognizer or Recognizer(num_threads=1)
        for i, (text, _) in zip(unread, recognizer.recognize([crops[i] for i in unread])):
            readings[i] = text
    items = []
    for i, (record, crop, meta) in enumerate(zip(records, crops, metas)):
        region = meta.get("region")
        line = original_line(dataset, int(region)) if dataset is not None and region is not None else None
        items.append(SheetItem(f"{i + 1:09d}", record.label, crop, readings[i], gt_crop=line,
                               gt_text=meta.get("source_text")))
    return items
