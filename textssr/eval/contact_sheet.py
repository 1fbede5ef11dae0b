"""Contact sheet: generated crops beside their ground-truth crops, with target text and OCR readings.

One cell per item: the generated crop, the real crop of the same region when there is one, and
under each tile what the OCR read (green when it equals the target, red otherwise). Cells fill a
grid row by row. Text is drawn with a CJK-capable font so Chinese targets stay legible.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from textssr.data.fonts import pip_font_paths

TILE_W, TILE_H = 160, 64  # each crop is scaled to fit this box, aspect ratio kept
FONT_SIZE = 14
LINE_H = FONT_SIZE + 4
PAD = 6
COLUMNS = 4
BACKGROUND, INK, GOOD, BAD, FRAME = (255, 255, 255), (0, 0, 0), (0, 130, 0), (200, 0, 0), (190, 190, 190)


@dataclass
class SheetItem:
    """One cell. ``crop``/``gt_crop``: uint8 RGB (H, W, 3) or None when absent or unreadable."""
    file: str
    target: str
    crop: Optional[np.ndarray]
    ocr: Optional[str]
    gt_crop: Optional[np.ndarray] = None
    gt_ocr: Optional[str] = None
    gt_text: Optional[str] = None  # the real crop's own word (synthesis: the word the target replaced)


def default_font_path() -> Path:
    """The bold Noto Sans CJK font installed by ``pip install cvttf-notosanscjk-bold``."""
    paths = pip_font_paths()
    if not paths:
        raise FileNotFoundError("no CJK font for the contact sheet: `pip install cvttf-notosanscjk-bold` "
                                "or pass font_path / use --no-sheet")
    path = Path(paths[0])
    if not path.is_file():
        raise FileNotFoundError(f"font file missing: {path} — reinstall cvttf-notosanscjk-bold")
    return path


def _fit(crop: np.ndarray) -> Image.Image:
    """Scale ``crop`` to fit TILE_W × TILE_H, keeping its aspect ratio (never upscaled beyond the box)."""
    image = Image.fromarray(crop)
    scale = min(TILE_W / image.width, TILE_H / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR)


def _clip(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _tile(sheet: Image.Image, draw: ImageDraw.ImageDraw, font, x: int, y: int, crop: Optional[np.ndarray],
          lines: Sequence[tuple]) -> None:
    """Draw one crop box at (x, y) and ``lines`` of (text, colour) under it."""
    draw.rectangle([x - 1, y - 1, x + TILE_W, y + TILE_H], outline=FRAME)
    if crop is None:
        draw.text((x + 4, y + TILE_H // 2 - LINE_H // 2), "(missing)", fill=BAD, font=font)
    else:
        image = _fit(crop)
        sheet.paste(image, (x + (TILE_W - image.width) // 2, y + (TILE_H - image.height) // 2))
    for i, (text, colour) in enumerate(lines):
        draw.text((x, y + TILE_H + 2 + i * LINE_H), _clip(draw, text, font, TILE_W), fill=colour, font=font)


def _reading(label: str, ocr: Optional[str], target: str) -> tuple:
    if ocr is None:
        return f"{label}: -", INK
    return f"{label}: {ocr or '(nothing)'}", GOOD if ocr == target else BAD


def render_contact_sheet(items: Sequence[SheetItem], font_path: Path | str, columns: int = COLUMNS) -> Image.Image:
    """Render ``items`` as an RGB image; a ground-truth tile is drawn only when some item has a gt crop."""
    if not items:
        raise ValueError("render_contact_sheet needs at least one item")
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    with_gt = any(item.gt_crop is not None for item in items)
    tiles_per_cell = 2 if with_gt else 1
    cell_w = tiles_per_cell * (TILE_W + PAD) + PAD
    cell_h = TILE_H + 3 * LINE_H + 2 * PAD
    columns = min(columns, len(items))
    rows = -(-len(items) // columns)
    sheet = Image.new("RGB", (columns * cell_w, LINE_H + PAD + rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    header = "generated | real (gt/)" if with_gt else "crop"
    draw.text((PAD, 2), f"{header} — OCR reading green = equals target, red = differs", fill=INK, font=font)
    for n, item in enumerate(items):
        x0 = PAD + (n % columns) * cell_w
        y0 = LINE_H + PAD + (n // columns) * cell_h
        _tile(sheet, draw, font, x0, y0, item.crop,
              [(f"target: {item.target}", INK), _reading("ocr", item.ocr, item.target), (item.file, FRAME)])
        if with_gt:
            _tile(sheet, draw, font, x0 + TILE_W + PAD, y0, item.gt_crop,
                  [("real crop", INK), _reading("ocr", item.gt_ocr, item.target)] if item.gt_text is None
                  else [(f"was: {item.gt_text}", INK)])
    return sheet
