"""Read and build TextSSR samples (method.md §2–3): AnyWord JSON / AnyWord-lmdb datasets, renderers, geometry.

Nothing here knows about models or training. See docs/architecture.md for the sample dict.
"""
from textssr.data.anyword import AnyWordDataset, collate
from textssr.data.fonts import resolve_font
from textssr.data.geometry import mask_bbox
from textssr.data.lmdb_store import AnyWordLmdbDataset
from textssr.data.render import render_glyph, render_ttf_img
from textssr.data.skips import SkipSample

__all__ = ["AnyWordDataset", "AnyWordLmdbDataset", "SkipSample", "collate", "mask_bbox", "render_glyph",
           "render_ttf_img", "resolve_font"]
