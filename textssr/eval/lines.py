"""Text lines of a photo with PP-OCRv4 detection + recognition (both ONNX models ship inside
``rapidocr-onnxruntime``; nothing is downloaded): the one detector of ``edit.py --list`` and of synthesis from a
folder of photos.

The angle classifier is off: it only turns upside-down crops, which scene-text photos rarely hold, and it costs a
third network per line.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

BOX_THRESH = 0.5  # the detector's mean probability inside a box (rapidocr's default)
UNCLIP_RATIO = 1.6  # how far a detected box is grown around its text (rapidocr's default)
TEXT_SCORE = 0.5  # lines read with a lower recognition confidence are dropped (rapidocr's default)


@dataclass
class TextLine:
    """A detected text line: its ``text`` as read, the recognition ``confidence`` in [0, 1], and its ``polygon``
    float (4, 2) in photo pixels (clockwise from the top-left, as the detector returns it)."""
    text: str
    confidence: float
    polygon: np.ndarray


class LineFinder:
    """PP-OCRv4 detection + recognition, loaded on first use (once per process) and shared between threads.
    ``num_threads``: onnxruntime's CPU threads (None: its default)."""

    def __init__(self, num_threads: Optional[int] = None):
        self.num_threads = num_threads
        self._ocr = None
        self._lock = threading.Lock()

    def _model(self):
        if self._ocr is None:
            from rapidocr_onnxruntime import RapidOCR
            options = {} if self.num_threads is None else {"intra_op_num_threads": int(self.num_threads)}
            self._ocr = RapidOCR(**options)
        return self._ocr

    def detect(self, photo: np.ndarray, min_confidence: float = TEXT_SCORE) -> List[TextLine]:
        """The text lines of a uint8 BGR (H, W, 3) photo, top to bottom then left to right, read with a
        confidence of at least ``min_confidence``."""
        with self._lock:
            found, _ = self._model()(np.ascontiguousarray(photo), use_det=True, use_cls=False, use_rec=True,
                                     box_thresh=BOX_THRESH, unclip_ratio=UNCLIP_RATIO,
                                     text_score=float(min_confidence))
        lines = []
        height, width = photo.shape[:2]
        for box, text, confidence in found or ():
            polygon = np.asarray(box, dtype=np.float64).reshape(4, 2)
            polygon[:, 0] = polygon[:, 0].clip(0, width)  # the detector's unclipped boxes may cross the border
            polygon[:, 1] = polygon[:, 1].clip(0, height)
            lines.append(TextLine(str(text), float(confidence), polygon))
        return lines
