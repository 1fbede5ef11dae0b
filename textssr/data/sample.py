"""Assemble one sample (SPEC §3) from a decoded image, a polygon and a text.

Pure with respect to its inputs: the only randomness is the crop window, drawn from the ``rng`` passed in.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Optional

import cv2
import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F

from textssr.data import geometry
from textssr.data.render import render_glyph, render_ttf_img
from textssr.data.skips import (EMPTY_EXTENT, IMAGE_UNREADABLE, MASK_EMPTY, POLYGON_DEGENERATE, POLYGON_OUTSIDE,
                                SkipSample)

try:  # the optional C extension (setup.py); without it whole images are decoded: same samples, slower
    from textssr.data._jpeg_window import decode_window as _jpeg_window
except ImportError:  # pragma: no cover - built wherever libjpeg-turbo's headers are installed
    _jpeg_window = None

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
JPEG_EOI_WINDOW = 65536  # a JPEG without its end marker in its last 64 KiB is truncated
WINDOW_DECODING = _jpeg_window is not None
WINDOW_MARGIN = 8  # px decoded around a window: the edge pixels of a cropped decode differ from a full one's


class Laps:
    """Accumulates named durations into ``sink`` (a Counter of seconds); does nothing when ``sink`` is None.
    ``clock`` is wall time; a benchmark on a busy machine may set it to ``time.process_time`` (CPU time)."""

    clock = staticmethod(time.perf_counter)

    def __init__(self, sink: Optional[Counter]):
        self.sink, self.t = sink, self.clock() if sink is not None else 0.0

    def __call__(self, name: str) -> None:
        if self.sink is not None:
            now = self.clock()
            self.sink[name] += now - self.t
            self.t = now


def _decode_jpeg(data: bytes) -> Optional[np.ndarray]:
    """BGR pixels of a JPEG through simplejpeg (libjpeg-turbo, the same integer IDCT and fancy upsampling as
    OpenCV and Pillow, so the same pixels), about 2x faster than ``cv2.imdecode`` on 1280x720 photos; None
    for what it cannot convert to BGR (CMYK, 12-bit, lossless, ...) or cannot parse: OpenCV then decides."""
    try:
        return simplejpeg.decode_jpeg(data, "BGR", strict=False)
    except ValueError:
        return None


def _check_jpeg_end(data: bytes, where: str) -> None:
    if data.rfind(JPEG_EOI, max(0, len(data) - JPEG_EOI_WINDOW)) < 0:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: truncated JPEG (no end marker)")


def decode_window(data: Optional[bytes], window: geometry.Box, where: str) -> Optional[np.ndarray]:
    """uint8 BGR (y1 − y0, x1 − x0, 3), equal to ``decode_image(data)[y0:y1, x0:x1]``, decoding only the rows
    down to the window's bottom and, in them, only the columns around it (3–4× less work than a whole
    1280×720 photo for a word). None when that is not possible — not a JPEG, the C extension not built, a
    colour space without BGR conversion, a stream the system's libjpeg rejects, a window outside the image —:
    the caller then decodes the whole image, which decides what is unreadable. A truncated JPEG raises
    SkipSample("image_unreadable") as :func:`decode_image` does."""
    if _jpeg_window is None or not data or data[:2] != JPEG_SOI:
        return None
    _check_jpeg_end(data, where)
    x0, y0, x1, y1 = window
    try:
        got = _jpeg_window(data, x0 - WINDOW_MARGIN, y0 - WINDOW_MARGIN, x1 + WINDOW_MARGIN, y1 + WINDOW_MARGIN)
    except ValueError:
        return None
    if got is None:
        return None
    rows, xoffset, yoffset, width, height = got
    if x0 < xoffset or y0 < yoffset or x1 > xoffset + width or y1 > yoffset + height:
        return None
    return np.frombuffer(rows, np.uint8).reshape(height, width, 3)[y0 - yoffset:y1 - yoffset,
                                                                   x0 - xoffset:x1 - xoffset]


def decode_image(data: Optional[bytes], where: str) -> np.ndarray:
    """uint8 BGR (H, W, 3) from encoded bytes (JPEG/PNG/...), raw pixel orientation (EXIF ignored, as Pillow
    and the annotations have it). JPEGs go through simplejpeg, anything it refuses and other formats through
    OpenCV. Raises SkipSample("image_unreadable") for bytes neither can decode or a truncated JPEG (decoders
    would return it half gray)."""
    if not data:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: empty file")
    image = None
    if data[:2] == JPEG_SOI:
        _check_jpeg_end(data, where)
        image = _decode_jpeg(data)
    if image is None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: not a decodable image")
    return image


def image_extent(image: np.ndarray, where: str) -> geometry.Box:
    """Content extent of a decoded BGR image; SkipSample("empty_extent") when it is all white."""
    extent = geometry.content_extent(image, bgr=True)
    if extent is None:
        raise SkipSample(EMPTY_EXTENT, f"{where}: image is all white")
    return extent


def resize_chw(x: np.ndarray, resolution: int) -> np.ndarray:
    """float32 (C, h, w) → contiguous (C, R, R), bilinear as torchvision's ``Resize(antialias=True)`` that the
    original uses.

    Upsampling (both sides ≤ R, the usual case for words in photos) is plain half-pixel bilinear, where
    antialiasing changes nothing: OpenCV computes it, one plane at a time straight into the output, ~20×
    faster than torch (equal to 1e-7, same mask after thresholding). Downsampling goes through torch's
    antialiased kernel itself.
    """
    channels, h, w = x.shape
    if h <= resolution and w <= resolution:
        out = np.empty((channels, resolution, resolution), dtype=np.float32)
        for c in range(channels):
            cv2.resize(x[c], (resolution, resolution), dst=out[c], interpolation=cv2.INTER_LINEAR)
        return out
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    out = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return out[0].numpy()


def planar_unit(crop_bgr: np.ndarray, *extra: np.ndarray) -> np.ndarray:
    """float32 (3 + len(extra), h, w) in [0, 1]: the RGB planes of a uint8 BGR (h, w, 3) crop, then each
    uint8 (h, w) plane of ``extra``, divided by 255 (the original's ``ToTensor``)."""
    h, w = crop_bgr.shape[:2]
    out = np.empty((3 + len(extra), h, w), dtype=np.float32)
    out[:3] = crop_bgr.transpose(2, 0, 1)[::-1]  # BGR → RGB
    for i, plane in enumerate(extra):
        out[3 + i] = plane
    return np.divide(out, 255.0, out=out)


def to_signed(rgb: np.ndarray) -> np.ndarray:
    """float32 (3, R, R) in [0, 1] → [-1, 1] in place (clipped: interpolation can overshoot by 1 ulp)."""
    rgb *= 2.0
    rgb -= 1.0
    return np.clip(rgb, -1.0, 1.0, out=rgb)


def region_window(extent: geometry.Box, polygon: np.ndarray, rng: Optional[np.random.Generator],
                  where: str = "") -> geometry.Box:
    """The crop window (x0, y0, x1, y1) of SPEC §3 steps 1–2 for ``polygon`` in an image whose content extent is
    ``extent``; ``rng`` draws its start (None = centred on the bbox). Raises SkipSample for a polygon outside
    the extent or a bbox that is empty once clamped to it."""
    bbox = geometry.polygon_bbox(polygon)
    if not geometry.overlaps(bbox, extent):
        raise SkipSample(POLYGON_OUTSIDE, f"{where}: bbox {bbox} outside content extent {extent}")
    window = geometry.square_window(extent, bbox, rng)
    if window is None:
        raise SkipSample(POLYGON_DEGENERATE, f"{where}: polygon bbox {bbox} is empty once clamped to {extent}")
    return window


def build_crop(crop: np.ndarray, window: geometry.Box, polygon: np.ndarray, text: str, *, resolution: int,
               ttf_size: int, max_len: int, font_path: Optional[str], vae_mode: bool = False, where: str = "",
               timings: Optional[Counter] = None) -> dict:
    """One sample dict from ``crop`` = the image's uint8 BGR pixels in ``window`` (from :func:`region_window`):
    a decoded image's ``image[y0:y1, x0:x1]`` or what :func:`decode_window` returns.

    Returns torch float32 tensors ``image`` (3, R, R) in [-1, 1], ``mask`` (1, R, R) in {0, 1} (0 = text),
    ``masked_image`` (3, R, R), ``glyph`` (3, R, R) in [0, 1], ``ttf_img`` (max_len, ttf_size, ttf_size) in
    [0, 1], and ``text``; only ``image`` when ``vae_mode``. Raises SkipSample("mask_empty") for a text area
    that vanishes at R×R.
    """
    lap = Laps(timings)
    if vae_mode:
        sample = {"image": torch.from_numpy(to_signed(resize_chw(planar_unit(crop), resolution)))}
        lap("crop_resize")
        return sample
    canvas = geometry.polygon_mask(polygon, window)
    lap("mask")
    planes = planar_unit(crop, canvas)  # RGB + the mask canvas, one conversion
    image_np = to_signed(resize_chw(planes[:3], resolution))
    lap("crop_resize")
    mask_np = (resize_chw(planes[3:], resolution) >= 0.5).astype(np.float32)
    rect = geometry.min_area_rect(mask_np[0])
    if rect is None:
        raise SkipSample(MASK_EMPTY, f"{where}: text area vanishes at {resolution}x{resolution}")
    masked_np = image_np * mask_np
    lap("mask")
    glyph = render_glyph(text, rect, font_path, ttf_size, resolution)
    lap("glyph")
    ttf_img = render_ttf_img(text, font_path, ttf_size, max_len)
    lap("ttf")
    return {"image": torch.from_numpy(image_np), "mask": torch.from_numpy(mask_np),
            "masked_image": torch.from_numpy(masked_np), "glyph": torch.from_numpy(glyph),
            "ttf_img": torch.from_numpy(ttf_img), "text": text}
