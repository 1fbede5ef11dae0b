"""Region geometry of method.md §3: content extent, square window, mask, rotated rectangle. Pure functions.

Coordinates are image pixels, (x, y). Boxes are ``(x0, y0, x1, y1)`` with x1/y1 exclusive.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw

Box = Tuple[int, int, int, int]
Rect = Tuple[Tuple[float, float], Tuple[float, float], float]  # OpenCV RotatedRect: (centre, (w, h), angle°)

# method.md §3 step 7: the glyph turns to run along the long side when size[0] > 1.5 × size[1].
GLYPH_TURN_RATIO = 1.5


def parse_polygon(polygon) -> Optional[np.ndarray]:
    """``polygon`` as float64 (N, 2), or None when it has fewer than 3 points, zero area or is malformed."""
    try:
        pts = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        return None
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return pts if area > 0 else None


def polygon_bbox(polygon: np.ndarray) -> Box:
    """Integer bbox of the polygon as the original computes it: ``int()`` of the min and max coordinates."""
    return (int(polygon[:, 0].min()), int(polygon[:, 1].min()), int(polygon[:, 0].max()), int(polygon[:, 1].max()))


def true_bbox(flags: np.ndarray) -> Optional[Box]:
    """Bounding box of the True pixels of a (h, w) bool array, None when there are none."""
    rows, cols = np.flatnonzero(flags.any(axis=1)), np.flatnonzero(flags.any(axis=0))
    if rows.size == 0:
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def content_extent(image: np.ndarray, bgr: bool = True) -> Optional[Box]:
    """Bounding box of the pixels whose gray value is below 255 (method.md §3 step 1), None if all white.

    ``image``: uint8 (H, W, 3), BGR when ``bgr`` else RGB. Gray is OpenCV's weighted conversion, as in
    the original. Photos almost always touch all four borders with non-white pixels; that is checked on
    the border lines first (O(H + W)) and the full scan runs only for padded images. Same result either way.
    """
    code = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return None
    borders = (image[:1], image[-1:], image[:, :1], image[:, -1:])
    if all((cv2.cvtColor(np.ascontiguousarray(b), code) < 255).any() for b in borders):
        return (0, 0, w, h)
    return true_bbox(cv2.cvtColor(image, code) < 255)


def overlaps(bbox: Box, extent: Box) -> bool:
    """True when the polygon's bbox and the content extent share area (touching edges do not count)."""
    return bbox[0] < extent[2] and bbox[2] > extent[0] and bbox[1] < extent[3] and bbox[3] > extent[1]


def _axis_window(ext0: int, ext1: int, b0: int, b1: int, side: int, rng: Optional[np.random.Generator]):
    if ext1 - ext0 < side:  # the extent is shorter than the square: take all of it
        return ext0, ext1
    lo, hi = max(ext0, b1 - side), min(ext1 - side, b0)  # bbox inside window, window inside extent
    start = int(rng.integers(lo, hi + 1)) if rng is not None else min(max((b0 + b1 - side) // 2, lo), hi)
    return start, start + side


def square_window(extent: Box, bbox: Box, rng: Optional[np.random.Generator] = None) -> Optional[Box]:
    """The crop window of method.md §3 step 2, or None when the clamped bbox is empty (L = 0).

    The bbox is clamped to the extent; L = max(w, h). Per axis the window start is drawn uniformly from ``rng``
    among the positions keeping the bbox inside the window and the window inside the extent (the original's
    ``randint(lo, hi + 1)`` could step one pixel past ``hi``; fixed), or centred on the bbox and clamped when
    ``rng`` is None. Where the extent is shorter than L the whole extent is taken: only then is it not square.
    """
    xl, yt, xr, yb = extent
    x0, y0 = min(max(bbox[0], xl), xr), min(max(bbox[1], yt), yb)
    x1, y1 = min(max(bbox[2], xl), xr), min(max(bbox[3], yt), yb)
    side = max(x1 - x0, y1 - y0)
    if side <= 0:
        return None
    sx0, sx1 = _axis_window(xl, xr, x0, x1, side, rng)
    sy0, sy1 = _axis_window(yt, yb, y0, y1, side, rng)
    return (sx0, sy0, sx1, sy1)


def polygon_mask(polygon: np.ndarray, window: Box) -> np.ndarray:
    """uint8 (h, w) canvas of the window: 255 outside the polygon, 0 inside (method.md §3 step 4, before resizing).
    The polygon is truncated to integers and drawn with Pillow as the original draws it on the full image;
    drawing on the window with shifted coordinates gives the same pixels, much cheaper."""
    sx0, sy0, sx1, sy1 = window
    canvas = Image.new("L", (sx1 - sx0, sy1 - sy0), 255)
    ImageDraw.Draw(canvas).polygon([(int(x) - sx0, int(y) - sy0) for x, y in polygon], fill=0)
    return np.asarray(canvas)


def min_area_rect(mask: np.ndarray) -> Optional[Rect]:
    """OpenCV ``minAreaRect`` of the 0-pixels of a (R, R) mask, points in (x, y); None if there are none. Only
    the first and last 0-pixel of each row are passed: they hold every vertex of the convex hull, which is all
    ``minAreaRect`` looks at, so the rectangle is the same as from all the pixels."""
    text = np.asarray(mask).reshape(mask.shape[-2:]) == 0
    rows = np.flatnonzero(text.any(axis=1))
    if rows.size == 0:
        return None
    band = text[rows]
    first = band.argmax(axis=1)
    last = band.shape[1] - 1 - band[:, ::-1].argmax(axis=1)
    points = np.concatenate([np.stack([first, rows], 1), np.stack([last, rows], 1)]).astype(np.int32)
    return cv2.minAreaRect(points)


def canonical_rect(rect: Rect) -> Rect:
    """The same rectangle with its angle in (0, 90], OpenCV 4.5.1–4.12's convention. OpenCV ≥ 4.13 returns
    angles in [-90, 0) instead; the original's corner order (``boxPoints``) and turn rule depend on (0, 90], so
    the glyph is placed in that convention whatever OpenCV is installed."""
    (cx, cy), (w, h), angle = rect
    while angle <= 0:
        angle, w, h = angle + 90.0, h, w
    while angle > 90:
        angle, w, h = angle - 90.0, h, w
    return (cx, cy), (w, h), angle


def glyph_corners(rect: Rect) -> np.ndarray:
    """float32 (4, 2): where the glyph image's [top-left, top-right, bottom-right, bottom-left] go: ``boxPoints``
    of the canonical rect, shifted by one when size[0] > 1.5 × size[1] (the original calls size[0] the height),
    so the text runs along the long side."""
    (cx, cy), (w, h), angle = canonical_rect(rect)
    a, b = math.sin(math.radians(angle)) * 0.5, math.cos(math.radians(angle)) * 0.5
    p0 = (cx - a * h - b * w, cy + b * h - a * w)
    p1 = (cx + a * h - b * w, cy - b * h - a * w)
    box = [p0, p1, (2 * cx - p0[0], 2 * cy - p0[1]), (2 * cx - p1[0], 2 * cy - p1[1])]
    if w > h * GLYPH_TURN_RATIO:
        box = box[1:] + box[:1]
    return np.asarray(box, dtype=np.float32)


def mask_bbox(mask) -> Box:
    """Bounding box of the 0-pixels of a (1, R, R) or (R, R) mask (torch or numpy); ValueError when there are none."""
    arr = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    box = true_bbox(arr.reshape(arr.shape[-2:]) == 0)
    if box is None:
        raise ValueError("mask has no text pixel (no 0 value)")
    return box

