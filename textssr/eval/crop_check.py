"""Crops that cannot be text lines, refused before OCR (evaluation and TextSSR-F's screening).

PP-OCRv4 resizes a crop to height 48 and pads a batch to its widest crop: a 3000 x 1 crop would become 144,000
pixels wide and take minutes. Crops thinner than MIN_SIDE or longer than MAX_ASPECT x their height (after
orientation: AnyText's evaluation turns a crop whose height exceeds TALL_RATIO x its width) are not read.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

TALL_RATIO = 1.2
MIN_SIDE = 2
MAX_ASPECT = 50


def crop_problem(crop: np.ndarray) -> Optional[str]:
    """``"degenerate"`` for a crop that cannot hold a readable text line (a side under MIN_SIDE px, or wider than
    MAX_ASPECT x its height once oriented), else None."""
    height, width = np.shape(crop)[:2]
    if min(height, width) < MIN_SIDE:
        return "degenerate"
    if height > TALL_RATIO * width:
        height, width = width, height
    return "degenerate" if width > MAX_ASPECT * height else None
