"""Bad-input accounting: the :class:`SkipSample` exception and the one-line-per-reason report.

A bad instance is never fatal and never silent. Cheap problems (empty text, a degenerate polygon,
characters the font lacks) are found while the index is built; expensive ones (an undecodable image, an
all-white image) when the sample is built. Either way the instance is skipped and counted under a short
snake_case reason; ``strict=True`` turns the first one into an error.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping

# Reasons, one source of truth (what each means is in REASON_HELP).
EMPTY_TEXT = "empty_text"
POLYGON_DEGENERATE = "polygon_degenerate"
POLYGON_OUTSIDE = "polygon_outside"
MISSING_GLYPH = "missing_glyph"
IMAGE_MISSING = "image_missing"
IMAGE_UNREADABLE = "image_unreadable"
EMPTY_EXTENT = "empty_extent"
MASK_EMPTY = "mask_empty"
TEXT_TRUNCATED = "text_truncated"  # counted, not skipped

REASON_HELP = {
    EMPTY_TEXT: "annotation with empty text",
    POLYGON_DEGENERATE: "polygon with fewer than 3 points, zero area or unreadable coordinates",
    POLYGON_OUTSIDE: "polygon wholly outside the image's content",
    MISSING_GLYPH: "text holds characters the font lacks (would render as tofu)",
    IMAGE_MISSING: "image file or LMDB record not found",
    IMAGE_UNREADABLE: "image bytes could not be decoded",
    EMPTY_EXTENT: "image is all white (no content extent)",
    MASK_EMPTY: "text area vanished when the region was resized",
    TEXT_TRUNCATED: "text longer than max_len: ttf_img truncated, sample kept",
}


class SkipSample(Exception):
    """One instance cannot be built. ``reason`` is a key of REASON_HELP; ``detail`` names the image and index."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # keep (reason, detail) across DataLoader worker pickling
        return (type(self), (self.reason, self.detail))


def report(counts: Mapping[str, int]) -> str:
    """One line per reason, most frequent first: ``"  12 missing_glyph  (text holds characters ...)"``."""
    counts = Counter({k: n for k, n in counts.items() if n})
    if not counts:
        return "no instance skipped"
    lines = []
    for reason, n in counts.most_common():
        lines.append(f"{n:>8} {reason}  ({REASON_HELP.get(reason, 'see SkipSample detail')})")
    return "\n".join(lines)
