"""Scene-text editing of whole photos (edit.py, app.py): one region → the infer pipeline → composited back.

``region`` (pure geometry and compositing), ``lines`` (PP-OCRv4 line finding), ``editor`` (the loaded pipeline),
``command`` (edit.py), ``app`` (the gradio app).
"""
from textssr.edit.editor import Edit, Editor, Repaint, Variant
from textssr.edit.lines import MIN_NED, LineFinder, TextLine, best_line
from textssr.edit.region import DILATE_PX, composite, edited_area, parse_polygon_arg, read_photo

__all__ = ["DILATE_PX", "MIN_NED", "Edit", "Editor", "LineFinder", "Repaint", "TextLine", "Variant", "best_line",
           "composite", "edited_area", "parse_polygon_arg", "read_photo"]
