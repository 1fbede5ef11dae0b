"""Text renderers of method.md §3 steps 7–8: the ``glyph`` image and the ``ttf_img`` character stack. Pure functions.

Both reproduce the original's Pillow ≤ 9.5 arithmetic on Pillow ≥ 10 (``getsize`` through ``getbbox``),
with fonts loaded once and per-character renderings cached per process.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
from PIL import Image, ImageDraw

from textssr.data.fonts import load_font, text_size
from textssr.data.geometry import Rect, glyph_corners

GLYPH_GRAY = 127  # ink gray of the glyph image; only pixels warped to exactly this value are kept
TTF_FONT_SCALE = 0.8  # ttf_img characters are drawn at int(0.8 × ttf_size) px


def ttf_gray_levels(max_len: int) -> np.ndarray:
    """int (max_len,): the gray level of channel i, (128 // max_len) × i (0, 5, 10, … for max_len 25)."""
    return (128 // max_len) * np.arange(max_len)


@functools.lru_cache(maxsize=16384)
def _char_coverage(font_path: str, ttf_size: int, char: str) -> np.ndarray:
    """uint8 (ttf_size, ttf_size): Pillow's coverage of ``char`` drawn centred as the original centres it."""
    font = load_font(font_path, int(TTF_FONT_SCALE * ttf_size))
    w, h = text_size(font, char)
    canvas = Image.new("L", (ttf_size, ttf_size), 0)
    ImageDraw.Draw(canvas).text(((ttf_size - w) // 2, (ttf_size - h) // 2), char, font=font, fill=255)
    out = np.asarray(canvas)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=8)
def _ttf_blend_table(max_len: int) -> np.ndarray:
    """float32 (max_len, 256), read-only: row i maps a coverage m to channel i's value in [0, 1], Pillow's
    own rounding of the blend onto white, DIV255(255 × (255 − m) + level_i × m) / 255."""
    coverage = np.arange(256, dtype=np.uint32)[None]
    level = ttf_gray_levels(max_len).astype(np.uint32)[:, None]
    blended = 255 * (255 - coverage) + level * coverage + 128
    table = (((blended >> 8) + blended) >> 8).astype(np.float32) / 255.0
    table.setflags(write=False)
    return table


def render_ttf_img(text: str, font_path: str, ttf_size: int = 64, max_len: int = 25) -> np.ndarray:
    """float32 (max_len, ttf_size, ttf_size) in [0, 1]: character i of ``text`` (truncated to ``max_len``) drawn
    centred on white at gray level (128 // max_len) × i; unused channels are 1.0. Equal to drawing each character
    with Pillow: the cached coverage goes through a per-channel table of Pillow's blend (:func:`_ttf_blend_table`)."""
    out = np.ones((max_len, ttf_size, ttf_size), dtype=np.float32)
    chars = text[:max_len]
    if chars:
        table = _ttf_blend_table(max_len)
        for i, c in enumerate(chars):
            cv2.LUT(_char_coverage(font_path, ttf_size, c), table[i], dst=out[i])
    return out


_GLYPH_TABLE = np.ones(256, dtype=np.float32)
_GLYPH_TABLE[GLYPH_GRAY] = GLYPH_GRAY / 255.0
_GLYPH_TABLE.setflags(write=False)


@functools.lru_cache(maxsize=1024)
def _text_line(font_path: str, ttf_size: int, text: str) -> np.ndarray:
    """uint8 (h, w): ``text`` on one line at ``ttf_size`` px, gray 127 on white, sized by ``getsize(text)``."""
    font = load_font(font_path, ttf_size)
    w, h = text_size(font, text)
    canvas = Image.new("L", (max(w, 0), max(h, 0)), 255)
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, fill=GLYPH_GRAY)
    out = np.asarray(canvas)
    out.setflags(write=False)
    return out


def render_glyph(text: str, rect: Rect, font_path: str, ttf_size: int = 64, resolution: int = 256) -> np.ndarray:
    """float32 (3, resolution, resolution) in [0, 1], values only 127/255 (ink) and 1.0 (method.md §3 step 7):
    ``text`` on one line at ``ttf_size`` px, perspective-warped (bilinear) from its own rectangle onto the corners
    of ``rect`` (an OpenCV RotatedRect in the R×R crop's (x, y) pixels, :func:`~textssr.data.geometry.glyph_corners`);
    only pixels warped to exactly 127 are kept."""
    out = np.empty((3, resolution, resolution), dtype=np.float32)
    line = _text_line(font_path, ttf_size, text)
    h, w = line.shape
    if w > 0 and h > 0:
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        matrix = cv2.getPerspectiveTransform(src, glyph_corners(rect))
        warped = cv2.warpPerspective(line, matrix, (resolution, resolution))
        cv2.LUT(warped, _GLYPH_TABLE, dst=out[0])  # exactly 127 → 127/255, anything else → 1.0
    else:
        out[0] = 1.0
    out[1:] = out[0]
    return out
