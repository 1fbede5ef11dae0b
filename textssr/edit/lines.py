"""Find the text lines of a photo with PP-OCRv4 detection + recognition (both ONNX models ship inside
``rapidocr-onnxruntime``; nothing is downloaded), and pick the one that reads a given word.

The angle classifier is off: it only turns upside-down crops, which scene-text photos rarely hold, and it costs a
third network per line. A line "reads" OLD when the NED (1 − edit distance / longer length, case folded) between its
reading and OLD is at least :data:`MIN_NED`; the best such line wins (ties: the more confident reading).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from textssr.config import ConfigError
from textssr.edit.region import polygon_arg
from textssr.eval.metrics import ned

MIN_NED = 0.5  # a reading at least half right: "Genexis Theatre" reads "Genaxis Theatre" (0.93), "Rotn" does not
LISTED = 8  # readings named in the error when nothing matches


@dataclass
class TextLine:
    """A detected text line: its ``text`` as read, the recognition ``confidence`` in [0, 1], and its ``polygon``
    float (4, 2) in photo pixels (clockwise from the top-left, as the detector returns it)."""
    text: str
    confidence: float
    polygon: np.ndarray


class LineFinder:
    """PP-OCRv4 detection + recognition, loaded on first use (once per process) and shared between threads."""

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

    def detect(self, photo: np.ndarray) -> List[TextLine]:
        """The text lines of a uint8 BGR (H, W, 3) photo, top to bottom then left to right."""
        with self._lock:
            found, _ = self._model()(np.ascontiguousarray(photo), use_det=True, use_cls=False, use_rec=True)
        lines = []
        height, width = photo.shape[:2]
        for box, text, confidence in found or ():
            polygon = np.asarray(box, dtype=np.float64).reshape(4, 2)
            polygon[:, 0] = polygon[:, 0].clip(0, width)  # the detector's unclipped boxes may cross the border
            polygon[:, 1] = polygon[:, 1].clip(0, height)
            lines.append(TextLine(str(text), float(confidence), polygon))
        return lines


def match_score(reading: str, word: str) -> float:
    """NED of ``reading`` against ``word``, case folded, in [0, 1]."""
    return ned(reading.casefold(), word.casefold())


def best_line(lines: List[TextLine], word: str, where: str = "photo") -> TextLine:
    """The line that reads ``word`` best; a one-line ConfigError listing what was read when none reaches
    MIN_NED."""
    if not word.strip():
        raise ConfigError("--find: the word to find is empty; give the text the photo shows, e.g. --find EXIT")
    if not lines:
        raise ConfigError(f"no text line found in {where}, so none reads {word!r}; give the region with --polygon")
    ranked = sorted(lines, key=lambda line: (match_score(line.text, word), line.confidence), reverse=True)
    if match_score(ranked[0].text, word) >= MIN_NED:
        return ranked[0]
    read = ", ".join(f"{line.text!r} {match_score(line.text, word):.2f}" for line in ranked[:LISTED])
    more = f", ... {len(ranked) - LISTED} more" if len(ranked) > LISTED else ""
    raise ConfigError(f"no text line of {where} reads {word!r} (NED >= {MIN_NED} needed; read: {read}{more}); "
                      "give another word or the region with --polygon")


def describe(line: TextLine) -> str:
    """One line of ``edit.py --list``: reading, confidence, polygon as ``--polygon`` takes it."""
    return f"{line.text!r}\t{line.confidence:.2f}\t{polygon_arg(line.polygon)}"
