"""Assemble one sample (method.md §3) from a crop of an image, a polygon and a text: the crop window
(:func:`region_window`, steps 1–2) and the sample dict (:func:`build_crop`, steps 3–8); decoding is in
:mod:`textssr.data.image_io`. The only randomness is the crop window, drawn from the ``rng`` passed in.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from textssr.data import geometry
from textssr.data.render import render_glyph, render_ttf_img
from textssr.data.skips import MASK_EMPTY, POLYGON_DEGENERATE, POLYGON_OUTSIDE, SkipSample
from textssr.utils.timing import Laps


def resize_chw(x: np.ndarray, resolution: int) -> np.ndarray:
    """float32 (C, h, w) → contiguous (C, R, R), bilinear as the original's torchvision ``Resize(antialias=True)``.

    Upsampling (both sides ≤ R, the usual case for words in photos) is plain half-pixel bilinear, where
    antialiasing changes nothing: OpenCV computes it plane by plane straight into the output, ~20× faster than
    torch (equal to 1e-7, same mask after thresholding). Downsampling goes through torch's antialiased kernel.
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
    """The crop window (x0, y0, x1, y1) of method.md §3 steps 1–2 for ``polygon`` in an image whose content extent is
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
    """One sample dict from ``crop``, the image's uint8 BGR pixels in ``window`` (from :func:`region_window`).

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
