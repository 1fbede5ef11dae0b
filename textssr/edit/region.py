"""One text region of a whole photo: parse and check it, build its sample as infer.py does, composite the
generated R×R region back. Pure functions (arrays in, arrays out); no model here.

Photos are uint8 BGR (H, W, 3) in raw pixel orientation (EXIF ignored), as :func:`textssr.data.sample.decode_image`
returns them and the annotations have them.

Compositing. The generated R×R region is resized back onto its window (bilinear) and blended into the photo only
inside the *edited area*: the text polygon (drawn as the model's mask is, :func:`textssr.data.geometry.polygon_mask`)
dilated by ``dilate`` px (an elliptical kernel of diameter 2·dilate + 1). The blend weight of an area pixel is
``min(1, d / (dilate + 1))``, d its Euclidean distance to the nearest pixel outside the area (OpenCV's
``distanceTransform``, mask size 5): the text itself is pasted, the ``dilate``-px ring around it fades into the photo.
Every pixel outside the edited area is the input pixel, bit for bit. ``dilate=0``: a hard paste of the polygon.
"""
from __future__ import annotations

import os
import re
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from textssr.config import ConfigError
from textssr.data import geometry
from textssr.data.fonts import missing_chars
from textssr.data.image_io import decode_image, image_extent
from textssr.data.sample import build_crop, region_window
from textssr.data.skips import MASK_EMPTY, POLYGON_OUTSIDE, SkipSample, text_problem

DILATE_PX = 3  # default dilation of the edited area around the text polygon, window pixels
MIN_POINTS = 4  # a text region is a quadrilateral (ICDAR) or a longer polygon (AnyWord)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def read_photo(path: str) -> np.ndarray:
    """uint8 BGR (H, W, 3) of the image file ``path``; a one-line ConfigError for a missing or undecodable file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"image {path}: no such file; give the path of a photo (JPEG, PNG, ...)") from None
    except OSError as exc:
        raise ConfigError(f"image {path}: cannot be read ({exc.strerror}); give a readable photo file") from None
    try:
        return decode_image(data, path)
    except SkipSample as exc:
        raise ConfigError(f"image {path}: {exc.detail.split(': ', 1)[-1]}; give a JPEG/PNG/... photo") from None


def parse_polygon_arg(text: str) -> np.ndarray:
    """float64 (N, 2) from ``"x1,y1,x2,y2,...,xN,yN"`` (N >= 4, image pixels); a one-line ConfigError for anything
    else: unreadable numbers, an odd count, fewer than 4 points, zero area."""
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    bad = [p for p in parts if not _NUMBER.match(p)]
    if bad or not parts:
        raise ConfigError(f"polygon {text!r}: {('not a number: ' + repr(bad[0])) if bad else 'empty'}; write the "
                          "corners as x1,y1,x2,y2,x3,y3,x4,y4 (pixels)")
    if len(parts) % 2 or len(parts) < 2 * MIN_POINTS:
        raise ConfigError(f"polygon {text!r}: {len(parts)} numbers; give at least {MIN_POINTS} corners as x,y pairs "
                          "(x1,y1,x2,y2,x3,y3,x4,y4)")
    points = np.asarray([float(p) for p in parts], dtype=np.float64).reshape(-1, 2)
    polygon = geometry.parse_polygon(points)
    if polygon is None:
        raise ConfigError(f"polygon {text!r}: encloses no area (corners on one line or repeated); give the 4 "
                          "corners of the text in order around it")
    return polygon


def polygon_arg(polygon: np.ndarray) -> str:
    """``"x1,y1,...,xN,yN"`` of a polygon, rounded to whole pixels: what ``--polygon`` reads."""
    return ",".join(str(int(round(float(v)))) for v in np.asarray(polygon).reshape(-1))


def check_polygon(polygon: np.ndarray, photo_shape: Sequence[int], where: str = "polygon") -> None:
    """Refuse a polygon with a corner outside the photo (x in [0, W], y in [0, H]), naming the corner and size."""
    height, width = photo_shape[:2]
    for x, y in np.asarray(polygon):
        if not (0 <= x <= width and 0 <= y <= height):
            raise ConfigError(f"{where}: corner ({x:g}, {y:g}) lies outside the {width}x{height} photo; give corners "
                              f"with 0 <= x <= {width} and 0 <= y <= {height}")


def check_text(text: str, font_path: str) -> None:
    """Refuse a text the glyph renderer cannot draw: empty, control characters / line breaks, characters the font
    lacks."""
    problem = text_problem(text)
    if problem == "empty_text":
        raise ConfigError("text is empty; give the new word with --text WORD")
    if problem is not None:
        raise ConfigError(f"text {text!r} holds control characters or line breaks; give one line of text")
    lacking = missing_chars(text, font_path)
    if lacking:
        raise ConfigError(f"text {text!r}: the font {font_path} has no {''.join(lacking)!r}; use other characters or "
                          "another font (--cfg-options font_path=...)")


def edit_window(photo: np.ndarray, polygon: np.ndarray) -> geometry.Box:
    """The crop window (x0, y0, x1, y1) of ``polygon`` in ``photo``: method.md §3 steps 1-2 with centre placement,
    exactly as infer.py builds a bench instance (``region_window(extent, polygon, None)``)."""
    try:
        extent = image_extent(photo, "photo")
    except SkipSample:
        raise ConfigError("photo: it is all white (no content to edit); give a photo") from None
    try:
        return region_window(extent, polygon, None, "photo")
    except SkipSample as exc:
        if exc.reason == POLYGON_OUTSIDE:
            raise ConfigError(f"region {polygon_arg(polygon)} lies outside the photo's content {extent} (white "
                              "border); choose a region on the picture") from None
        raise ConfigError(f"region {polygon_arg(polygon)} is too small (under one pixel); choose a larger "
                          "region") from None


def build_sample(photo: np.ndarray, polygon: np.ndarray, text: str, *, resolution: int, ttf_size: int,
                 max_len: int, font_path: str) -> Tuple[dict, geometry.Box]:
    """(sample, window): the method.md §3 sample of ``text`` in ``polygon`` (see textssr.data.sample.build_crop — image
    (3, R, R) in [-1, 1], mask (1, R, R) with 0 = text area, masked_image, glyph (3, R, R) in [0, 1], ttf_img
    (max_len, ttf_size, ttf_size) in [0, 1]) and its window in photo pixels. A text area that vanishes at R×R is
    a one-line ConfigError."""
    window = edit_window(photo, polygon)
    x0, y0, x1, y1 = window
    try:
        sample = build_crop(photo[y0:y1, x0:x1], window, polygon, text, resolution=resolution, ttf_size=ttf_size,
                            max_len=max_len, font_path=font_path, where="photo")
    except SkipSample as exc:
        if exc.reason != MASK_EMPTY:
            raise
        raise ConfigError(f"region {polygon_arg(polygon)} is too small: its text area vanishes in the "
                          f"{resolution}x{resolution} window the model sees ({x1 - x0}x{y1 - y0} photo pixels); "
                          "choose a larger region") from None
    return sample, window


def blend_weight(polygon: np.ndarray, window: geometry.Box, dilate: int = DILATE_PX) -> np.ndarray:
    """float32 (h, w) in [0, 1] over the window: min(1, d / (dilate + 1)) inside the edited area (the polygon
    dilated by ``dilate`` px), d the distance to the nearest pixel outside it; exactly 0 outside the area."""
    text_area = (geometry.polygon_mask(polygon, window) == 0).astype(np.uint8)
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        text_area = cv2.dilate(text_area, kernel)
    distance = cv2.distanceTransform(text_area, cv2.DIST_L2, 5)
    return np.minimum(distance / float(dilate + 1), 1.0).astype(np.float32)


def composite(photo: np.ndarray, window: geometry.Box, region_rgb: np.ndarray, polygon: np.ndarray,
              dilate: int = DILATE_PX) -> np.ndarray:
    """A copy of ``photo`` (uint8 BGR (H, W, 3)) with the generated ``region_rgb`` (uint8 RGB (R, R, 3)) resized
    onto ``window`` (bilinear) and blended in with :func:`blend_weight`; pixels of weight 0 are not touched."""
    x0, y0, x1, y1 = window
    generated = cv2.resize(np.ascontiguousarray(region_rgb[:, :, ::-1]), (x1 - x0, y1 - y0),
                           interpolation=cv2.INTER_LINEAR)
    weight = blend_weight(polygon, window, dilate)
    out = photo.copy()
    inside = weight > 0
    before = photo[y0:y1, x0:x1][inside].astype(np.float32)
    after = generated[inside].astype(np.float32)
    blended = np.rint(before + weight[inside][:, None] * (after - before))
    out[y0:y1, x0:x1][inside] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


def edited_area(photo_shape: Sequence[int], polygon: np.ndarray, window: geometry.Box,
                dilate: int = DILATE_PX) -> np.ndarray:
    """bool (H, W): the photo pixels :func:`composite` may change (weight > 0); everything else stays bit-exact."""
    area = np.zeros(photo_shape[:2], dtype=bool)
    x0, y0, x1, y1 = window
    area[y0:y1, x0:x1] = blend_weight(polygon, window, dilate) > 0
    return area


def encode_image(image_bgr: np.ndarray, path: str) -> bytes:
    """The bytes of ``image_bgr`` in the format ``path``'s extension names (PNG, lossless, unless it says
    otherwise); a one-line ConfigError for an extension OpenCV cannot write."""
    ext = os.path.splitext(path)[1].lower()
    if not ext or not cv2.haveImageWriter("x" + ext):
        raise ConfigError(f"--out {path}: cannot write {ext or 'a file without extension'}; name a .png file")
    ok, data = cv2.imencode(ext, image_bgr)
    if not ok:
        raise ConfigError(f"--out {path}: OpenCV could not encode the image as {ext}; name a .png file")
    return data.tobytes()


def to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """uint8 RGB view-copy of a BGR photo (for display)."""
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def conditioning_views(sample: dict, text: Optional[str] = None) -> dict:
    """uint8 RGB pictures of what the model saw: ``masked_image`` (R, R, 3), ``glyph`` (R, R, 3) and ``ttf_strip``
    (ttf_size, n · ttf_size, 3) — the ttf_img channels of the n drawn characters side by side, as stored."""
    def unit(x):
        return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)

    masked = unit((sample["masked_image"].float().numpy().transpose(1, 2, 0) + 1.0) / 2.0)
    glyph = unit(sample["glyph"].float().numpy().transpose(1, 2, 0))
    ttf = sample["ttf_img"].float().numpy()
    drawn = max(1, min(len(text if text is not None else sample["text"]), ttf.shape[0]))
    strip = unit(np.concatenate(list(ttf[:drawn]), axis=1))
    return {"masked_image": masked, "glyph": glyph, "ttf_strip": np.repeat(strip[:, :, None], 3, axis=2)}
