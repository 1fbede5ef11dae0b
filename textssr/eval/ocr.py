"""Text recognition of crops with PP-OCRv4 (the ONNX model shipped inside ``rapidocr-onnxruntime``).

Recognition only: the crop already is the text region, so no detector and no angle classifier run. The model files
come with the wheel (nothing is downloaded). Shared by evaluation (``eval.py``) and TextSSR-F's screening.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np
from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
from rapidocr_onnxruntime.utils import read_yaml, update_model_path

from textssr.eval.crop_check import TALL_RATIO, crop_problem

OCR_MODEL = "PP-OCRv4 recognition (ch_PP-OCRv4_rec_infer.onnx from rapidocr-onnxruntime)"
ROTATION_RULE = (f"crops taller than {TALL_RATIO} x their width are rotated 90 degrees counter-clockwise "
                 "(as AnyText's eval_dgocr.py and PaddleOCR's crop step): text running top-to-bottom becomes left-to-right")


def orient_for_recognition(crop: np.ndarray) -> np.ndarray:
    """``crop`` (H, W[, C]) rotated 90° counter-clockwise if H > 1.2 × W, else unchanged. Counter-clockwise is
    what AnyText does: the right edge becomes the top, so a word written top-to-bottom with its letters turned
    clockwise reads left-to-right afterwards."""
    height, width = crop.shape[:2]
    if height > TALL_RATIO * width:
        return np.ascontiguousarray(np.rot90(crop, k=1))
    return crop


def _as_bgr(crop: np.ndarray) -> np.ndarray:
    """RGB(A) or gray uint8 (H, W[, C]) → contiguous BGR uint8 (H, W, 3), what PaddleOCR models were trained on."""
    crop = np.asarray(crop)
    if crop.dtype != np.uint8:
        raise ValueError(f"Recognizer expects uint8 crops with values 0-255, got dtype {crop.dtype}")
    if crop.ndim == 2:
        return cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    if crop.ndim == 3 and crop.shape[2] == 3:
        return np.ascontiguousarray(crop[:, :, ::-1])
    if crop.ndim == 3 and crop.shape[2] == 4:
        return cv2.cvtColor(crop, cv2.COLOR_RGBA2BGR)
    raise ValueError(f"Recognizer expects crops shaped (H, W), (H, W, 3) or (H, W, 4), got {crop.shape}")


class Recognizer:
    """PP-OCRv4 text recognition on lists of RGB crops. ``batch_size`` crops go through the network at once,
    sorted by aspect ratio and padded to the widest (PaddleOCR's scheme), so a reading can differ marginally with
    the batch it falls in. ``num_threads`` limits onnxruntime's CPU threads (None: its default)."""

    def __init__(self, batch_size: int = 32, num_threads: int | None = None):
        if batch_size < 1:
            raise ValueError(f"Recognizer batch_size must be >= 1, got {batch_size}")
        config = update_model_path(read_yaml(DEFAULT_CFG_PATH))["Rec"]
        config["rec_batch_num"] = batch_size
        if num_threads is not None:
            config["intra_op_num_threads"] = num_threads
        self.batch_size = batch_size
        self._model = TextRecognizer(config)

    def recognize(self, crops: Sequence[np.ndarray]) -> List[Tuple[str, float]]:
        """One ``(text, confidence)`` per crop — uint8 RGB (H, W, 3), gray or RGBA, H, W >= 1 — in input order;
        confidence is the mean per-character probability in [0, 1] (0.0 when nothing is read). A degenerate crop
        (:func:`crop_problem`) is not run through the model and reads ``("", 0.0)``."""
        if not crops:
            return []
        images, readable = [], []
        for i, crop in enumerate(crops):
            if min(np.shape(crop)[:2]) < 1:
                raise ValueError(f"Recognizer got an empty crop of shape {np.shape(crop)}")
            if crop_problem(crop) is None:
                images.append(_as_bgr(orient_for_recognition(np.asarray(crop))))
                readable.append(i)
        out = [("", 0.0)] * len(crops)
        if images:
            readings, _elapsed = self._model(images)
            for i, (text, conf) in zip(readable, readings):
                out[i] = (text, float(conf))
        return out
