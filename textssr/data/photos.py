"""A folder of photos as a source of text regions: which files are photos, reading one without trusting it, and
the shape of a detected text line.

A photo that cannot serve is skipped under a reason (:data:`PHOTO_HELP`), never fatal: an empty or truncated file,
one no decoder takes, one too small to hold a line, one too large to decode safely (its size is read from the
header, so a 12,000 × 9,000 photo is refused before 300 MB of pixels are allocated).
"""
from __future__ import annotations

import io
import math
import os
import re
import warnings
from typing import Iterator, List, Tuple

import numpy as np
from PIL import Image

from textssr.data.image_io import decode_image
from textssr.data.skips import SkipSample

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # case-insensitive
PHOTO_EMPTY = "photo_empty"
PHOTO_UNREADABLE = "photo_unreadable"
PHOTO_TOO_SMALL = "photo_too_small"
PHOTO_TOO_LARGE = "photo_too_large"
PHOTO_HELP = {
    PHOTO_EMPTY: "photo file of 0 bytes",
    PHOTO_UNREADABLE: "photo that cannot be read or decoded (truncated, not an image, unreadable file)",
    PHOTO_TOO_SMALL: "photo whose shorter side is below `min_photo_side` pixels",
    PHOTO_TOO_LARGE: "photo of more than `max_photo_pixels` pixels (its header says so; it is not decoded)",
}


def natural_key(name: str):
    """Sort key that orders ``img_2`` before ``img_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def walk_photos(folder: str) -> Iterator[str]:
    """The photos under ``folder`` (recursively, hidden files and folders left out, symbolic links to folders not
    followed) as paths relative to it with ``/``, as the file system lists them."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.lower().endswith(PHOTO_SUFFIXES) and not name.startswith("."):
                yield os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")


def list_photos(folder: str) -> List[str]:
    """:func:`walk_photos` in natural order: the order that numbers regions, the same on every machine."""
    return sorted(walk_photos(folder), key=natural_key)


def photo_size(data: bytes) -> Tuple[int, int]:
    """(width, height) from the header of encoded bytes, without decoding the pixels; SkipSample when no reader
    knows the format."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels decides
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError:
        raise SkipSample(PHOTO_TOO_LARGE, f"more than {2 * Image.MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, ValueError) as exc:
        raise SkipSample(PHOTO_UNREADABLE, f"not an image ({type(exc).__name__})") from None


def read_photo(path: str, min_side: int, max_pixels: int) -> np.ndarray:
    """uint8 BGR (H, W, 3) of the photo at ``path``; SkipSample under a PHOTO_* reason when it cannot serve."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SkipSample(PHOTO_UNREADABLE, f"{path}: cannot be read ({exc.strerror})") from None
    if not data:
        raise SkipSample(PHOTO_EMPTY, f"{path}: empty file")
    try:
        width, height = photo_size(data)
    except SkipSample as exc:
        raise SkipSample(exc.reason, f"{path}: {exc.detail}") from None
    if width * height > max_pixels:
        raise SkipSample(PHOTO_TOO_LARGE, f"{path}: {width} x {height} pixels > max_photo_pixels={max_pixels}")
    if min(width, height) < min_side:
        raise SkipSample(PHOTO_TOO_SMALL, f"{path}: {width} x {height} pixels, a side < min_photo_side={min_side}")
    try:
        return decode_image(data, path)
    except SkipSample as exc:
        raise SkipSample(PHOTO_UNREADABLE, exc.detail) from None


def line_shape(polygon) -> Tuple[float, float, float]:
    """(height px, aspect = width / height, angle in degrees of the reading direction from horizontal, in
    [0, 90]) of a detected line's quadrilateral (4, 2), corners clockwise from the top-left as the detector gives
    them: width runs along the top edge, height along the left edge (averaged with the opposite edges)."""
    p = np.asarray(polygon, dtype=np.float64).reshape(4, 2)
    top, bottom = p[1] - p[0], p[2] - p[3]
    width = (np.hypot(*top) + np.hypot(*bottom)) / 2
    height = (np.hypot(*(p[3] - p[0])) + np.hypot(*(p[2] - p[1]))) / 2
    along = top + bottom
    angle = abs(math.degrees(math.atan2(along[1], along[0])))
    angle = 180.0 - angle if angle > 90 else angle
    return float(height), float(width / height) if height > 0 else 0.0, float(angle)
