"""Bad-input accounting: the :class:`SkipSample` exception and the one-line-per-reason report.

A bad instance is never fatal and never silent. Cheap problems (empty text, a degenerate polygon, characters the
font lacks) are found while the index is built, expensive ones (an undecodable or all-white image) when the sample
is built; either way it is skipped and counted under a snake_case reason. ``strict=True`` makes the first an error.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Dict, Mapping, Optional, Tuple

# Reasons, one source of truth (what each means is in REASON_HELP).
ENTRY_MALFORMED = "entry_malformed"
IMAGE_NAME_INVALID = "image_name_invalid"
ANNOTATIONS_MALFORMED = "annotations_malformed"
ANNOTATION_MALFORMED = "annotation_malformed"
LANGUAGE_INVALID = "language_invalid"
EMPTY_TEXT = "empty_text"
TEXT_INVALID = "text_invalid"
TEXT_CONTROL = "text_control_chars"
POLYGON_DEGENERATE = "polygon_degenerate"
POLYGON_OUTSIDE = "polygon_outside"
MISSING_GLYPH = "missing_glyph"
IMAGE_MISSING = "image_missing"
IMAGE_UNREADABLE = "image_unreadable"
EMPTY_EXTENT = "empty_extent"
MASK_EMPTY = "mask_empty"
TEXT_TRUNCATED = "text_truncated"  # counted, not skipped
IMAGE_OUTSIDE_ROOT = "image_outside_root"
# What a filter the user asked for removed: counted apart from the skips (the input was fine).
OTHER_LANGUAGE = "other_language"
BEYOND_MAX_REGIONS = "beyond_max_regions"

REASON_HELP = {
    ENTRY_MALFORMED: "data_list entry that is not a JSON object (counted once per entry)",
    IMAGE_NAME_INVALID: "entry whose img_name is missing or not a string (each of its annotations counted)",
    ANNOTATIONS_MALFORMED: "entry whose annotations are not a list (counted once per entry)",
    ANNOTATION_MALFORMED: "annotation that is not a JSON object",
    LANGUAGE_INVALID: "annotation whose language is neither a string nor null",
    EMPTY_TEXT: "annotation with empty or whitespace-only text",
    TEXT_INVALID: "annotation whose text is not a string",
    TEXT_CONTROL: "text holding control characters (newline, carriage return, tab, NUL, ...) or line separators",
    POLYGON_DEGENERATE: "polygon with fewer than 3 points, zero area or unreadable coordinates",
    POLYGON_OUTSIDE: "polygon wholly outside the image's content",
    MISSING_GLYPH: "text holds characters the font lacks (would render as tofu)",
    IMAGE_MISSING: "image file or LMDB record not found",
    IMAGE_UNREADABLE: "image bytes could not be decoded",
    EMPTY_EXTENT: "image is all white (no content extent)",
    MASK_EMPTY: "text area vanished when the region was resized",
    TEXT_TRUNCATED: "text longer than max_len: ttf_img truncated, sample kept",
    IMAGE_OUTSIDE_ROOT: "img_name absolute or climbing out of data_root with ../ (allow_images_outside_root=True "
                        "reads it)",
}

FILTER_HELP = {
    OTHER_LANGUAGE: "annotation of another language than the `language` option keeps",
    BEYOND_MAX_REGIONS: "region after the first `max_regions`",
}


def split_filtered(counts: Mapping[str, int]) -> Tuple[Dict[str, int], Dict[str, int]]:
    """``counts`` as (skipped, filtered): a stored index keeps both in one dict."""
    skipped = {k: int(n) for k, n in counts.items() if k not in FILTER_HELP}
    return skipped, {k: int(n) for k, n in counts.items() if k in FILTER_HELP}


def brief(counts: Mapping[str, int]) -> str:
    """``reason=n, ...`` (or "none"), for one-line summaries."""
    return ", ".join(f"{k}={n}" for k, n in sorted(counts.items()) if n) or "none"


def text_problem(text) -> Optional[str]:
    """The skip reason of a text that cannot be rendered on one line (None for a usable one): not a string, blank,
    or holding control characters (category Cc: \\n, \\r, \\t, NUL, ...) or line/paragraph separators (Zl, Zp) —
    Pillow's layout engine fails on a line break, and a glyph image has one line."""
    if not isinstance(text, str):
        return TEXT_INVALID
    if not text.strip():
        return EMPTY_TEXT
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text):
        return TEXT_CONTROL
    return None


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
    return "\n".join(f"{n:>8} {reason}  ({REASON_HELP.get(reason, 'see SkipSample detail')})"
                     for reason, n in counts.most_common()) or "no instance skipped"
