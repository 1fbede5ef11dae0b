"""Fonts: resolve the configured font (or a registry-installed fallback), cache loaded fonts, find tofu.

The original loads ``AlibabaPuHuiTi-3-85-Bold.ttf`` from the repo root (a user download); when it is absent we
fall back, with one warning, to a bold CJK + Latin font installable from a package registry.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from typing import FrozenSet, List, Tuple

from fontTools.ttLib import TTFont
from PIL import ImageFont

from textssr.data.errors import DataError
from textssr.utils.errors import first_line

DEFAULT_FONT = "AlibabaPuHuiTi-3-85-Bold.ttf"
# Fallbacks in order: PyPI `cvttf-notosanscjk-bold`, then Debian's fonts-noto-cjk and fonts-wqy-microhei.
PIP_FONT = ("cvttf_NotoSansCJK_Bold", "NotoSansCJKtc-Bold.otf")
SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
INSTALL_HINT = ("place the font there, or install a fallback: `pip install cvttf-notosanscjk-bold` "
                "(or `apt-get install fonts-noto-cjk`)")

_warned = set()


def pip_font_paths() -> List[str]:
    """Where the PyPI fallback font is (one path per folder of its package, the file maybe absent); [] when the
    package is not installed."""
    spec = importlib.util.find_spec(PIP_FONT[0])
    folders = (spec.submodule_search_locations or ()) if spec is not None else ()
    return [os.path.join(f, PIP_FONT[1]) for f in folders]


def fallback_fonts() -> List[str]:
    """Registry-installed bold CJK fonts found on this machine, best first."""
    return [p for p in pip_font_paths() + list(SYSTEM_FONTS) if os.path.isfile(p)]


def resolve_font(font_path: str = DEFAULT_FONT) -> str:
    """``font_path`` if it is a file, else the first fallback font (one warning naming both paths); a DataError
    with the install command when neither exists."""
    if font_path and os.path.isfile(str(font_path)):
        return check_font(str(font_path))
    if font_path and os.path.isdir(str(font_path)):
        raise DataError(f"font_path={font_path!r} is a folder; name a .ttf/.otf/.ttc font file")
    fallbacks = fallback_fonts()
    if not fallbacks:
        raise DataError(f"font not found: {font_path!r} and no fallback font installed — {INSTALL_HINT}")
    chosen = fallbacks[0]
    if (font_path, chosen) not in _warned:
        _warned.add((font_path, chosen))
        warnings.warn(f"font {font_path!r} not found; using {chosen} instead (glyphs will differ from the "
                      f"original's AlibabaPuHuiTi)", stacklevel=2)
    return chosen


@functools.lru_cache(maxsize=8)
def check_font(path: str) -> str:
    """``path`` if FreeType and fontTools can both read it (rendering and the tofu check need them), else a
    DataError naming it: a mistyped ``font_path`` fails at start-up, not at the first sample."""
    try:
        load_font(path, 16)
        if not font_charset(path):
            raise ValueError("it maps no character")
    except Exception as exc:  # FreeType, fontTools: OSError, TTLibError, struct.error, ... on a non-font file
        raise DataError(f"font_path={path!r} is not a usable font file ({type(exc).__name__}: {first_line(exc)}); "
                          "name a .ttf/.otf/.ttc font") from None
    return path


@functools.lru_cache(maxsize=32)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """The FreeType font at ``size`` px, loaded once per process (the original re-opened it per character)."""
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=8)
def font_charset(path: str) -> FrozenSet[int]:
    """Code points the font maps to a glyph (its best cmap), read once per process."""
    with TTFont(path, lazy=True, fontNumber=0) as font:  # fontNumber: first face of a .ttc collection
        return frozenset(font.getBestCmap() or {})


def missing_chars(text: str, path: str) -> List[str]:
    """Characters of ``text`` the font lacks (they would render as tofu), in order of appearance, unique."""
    charset = font_charset(path)
    return list(dict.fromkeys(c for c in text if ord(c) not in charset))


def text_size(font: ImageFont.FreeTypeFont, text: str) -> Tuple[int, int]:
    """Pillow ≤ 9.5's ``font.getsize(text)``: ``(bbox[2] − bbox[0], bbox[3])`` of ``getbbox`` (method.md §3 step 8)."""
    left, _, right, bottom = font.getbbox(text)
    return right - left, bottom
