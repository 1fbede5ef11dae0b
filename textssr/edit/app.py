"""The gradio app of ``app.py``: upload a photo, choose a text region, type the new text, Generate.

A region is chosen by clicking its 4 corners on the photo (or 2 opposite corners of a box), by picking one of the
lines PP-OCRv4 detects ("Detect text"), or by typing/pasting ``x1,y1,...,x4,y4``. Generate shows the edited photo
(before/after and one per variant), the generated R×R window and the conditioning the model saw (masked image,
glyph, TTF characters). The pipeline (one :class:`~textssr.edit.editor.Editor`) loads once per process, on the first
Generate; mistakes are messages in the page, never tracebacks.

Handlers are plain functions of the component values (``on_*``), so they can be called without a browser.
"""
from __future__ import annotations

import functools
import os
import time
import traceback
from typing import List, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no version check: the app runs offline

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from textssr.config import ConfigError  # noqa: E402
from textssr.edit.editor import Edit, Editor  # noqa: E402
from textssr.edit.lines import LineFinder  # noqa: E402
from textssr.edit.region import conditioning_views, parse_polygon_arg, polygon_arg, read_photo, to_rgb  # noqa: E402
from textssr.models import SCHEDULERS  # noqa: E402
from textssr.utils.errors import InputError

CORNERS, BOX = "4 corners", "box (2 opposite corners)"
CLICKS = {CORNERS: 4, BOX: 2}
MAX_STEPS = 100
VIEW_SIDE = 192  # px: the R×R views are shown at least this large
DIVIDER_MARGIN = 8  # photo px between the before/after divider and the edited region
DETECTED, PICKED, CLICKED = (0, 200, 255), (0, 220, 0), (255, 40, 40)  # RGB of the overlays


# ------------------------------------------------------------------------------------------- pictures


def draw_overlay(photo_rgb: np.ndarray, polygon: Optional[np.ndarray] = None, points=(), lines=()) -> np.ndarray:
    """A copy of the photo with the detected ``lines`` (thin), the chosen ``polygon`` and pending click ``points``."""
    canvas = photo_rgb.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 640))
    for line in lines:
        cv2.polylines(canvas, [np.round(np.asarray(line["polygon"])).astype(np.int32)], True, DETECTED, thickness)
    if polygon is not None:
        cv2.polylines(canvas, [np.round(polygon).astype(np.int32)], True, PICKED, thickness + 1)
    for x, y in points:
        cv2.circle(canvas, (int(round(x)), int(round(y))), 2 * thickness + 2, CLICKED, -1)
    return canvas


def enlarge(image: np.ndarray, min_side: int = VIEW_SIDE) -> np.ndarray:
    """``image`` scaled up by a whole factor (nearest) until its short side is at least ``min_side`` px: an R×R
    window of the tiny models is 64 px, too small to see in the page."""
    factor = max(1, -(-min_side // max(1, min(image.shape[:2]))))
    return image if factor == 1 else cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def box_polygon(a, b) -> List[List[float]]:
    """The 4 corners (clockwise from the top-left) of the axis-aligned box with opposite corners ``a`` and ``b``."""
    (x0, x1), (y0, y1) = sorted((a[0], b[0])), sorted((a[1], b[1]))
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def message(text: str, ok: bool = True) -> str:
    return ("" if ok else "**error:** ") + text


# ------------------------------------------------------------------------------------------- handlers


class Handlers:
    """The app's behaviour, one method per event, independent of gradio's components."""

    def __init__(self, editor: Editor, finder: Optional[LineFinder] = None):
        self.editor = editor
        self.finder = finder or LineFinder()

    def photo(self, path: Optional[str]) -> np.ndarray:
        if not path:
            raise ConfigError("no photo yet; upload one first")
        return read_photo(path)

    def on_upload(self, path):
        """→ canvas, clicks, polygon text, lines, status (everything chosen for the previous photo is reset)."""
        if not path:
            return None, [], "", [], ""
        try:
            photo = self.photo(path)
        except InputError as exc:
            return None, [], "", [], message(str(exc), ok=False)
        height, width = photo.shape[:2]
        return (to_rgb(photo), [], "", [],
                f"{width}x{height} photo: click the text's corners on it, or Detect text and pick a line")

    def on_click(self, path, clicks, mode, lines, point):
        """A click at ``point`` (x, y) on the canvas → canvas, clicks, polygon text, status."""
        photo = to_rgb(self.photo(path))
        clicks = (list(clicks or []) + [list(map(float, point))])[-CLICKS[mode]:]
        if len(clicks) < CLICKS[mode]:
            note = f"corner {len(clicks)} of {CLICKS[mode]} at ({point[0]}, {point[1]})"
            return draw_overlay(photo, points=clicks, lines=lines), clicks, "", note
        corners = clicks if mode == CORNERS else box_polygon(*clicks)
        polygon = np.asarray(corners, dtype=np.float64)
        return (draw_overlay(photo, polygon, points=clicks, lines=lines), [], polygon_arg(polygon),
                "region set: type the new text and Generate")

    def on_polygon(self, path, polygon_text, lines):
        """The polygon typed or pasted → canvas, status."""
        photo = to_rgb(self.photo(path))
        if not polygon_text.strip():
            return draw_overlay(photo, lines=lines), ""
        try:
            polygon = parse_polygon_arg(polygon_text)
        except InputError as exc:
            return draw_overlay(photo, lines=lines), message(str(exc), ok=False)
        return draw_overlay(photo, polygon, lines=lines), ""

    def on_detect(self, path):
        """→ canvas, lines, dropdown choices, status."""
        photo = self.photo(path)
        found = self.finder.detect(photo)
        lines = [{"text": line.text, "confidence": line.confidence, "polygon": line.polygon.tolist()}
                 for line in found]
        choices = [(f"{k + 1}: {line['text']!r} ({line['confidence']:.2f})", str(k)) for k, line in enumerate(lines)]
        status = (f"{len(lines)} line(s) found: pick one" if lines else "no text line found: click the corners instead")
        return draw_overlay(to_rgb(photo), lines=lines), lines, choices, status

    def on_pick(self, path, choice, lines):
        """A detected line picked → canvas, polygon text, status."""
        photo = to_rgb(self.photo(path))
        if choice in (None, "") or not lines:
            return draw_overlay(photo, lines=lines or []), "", ""
        line = lines[int(choice)]
        polygon = np.asarray(line["polygon"], dtype=np.float64)
        return (draw_overlay(photo, polygon, lines=lines), polygon_arg(polygon),
                f"region set to the line read {line['text']!r}: type the new text and Generate")

    def on_generate(self, path, polygon_text, text, steps, sampler, seed, variants):
        """→ (before, after), divider position (% of the width: just left of the region, so the slider opens on the
        edited text), variants gallery, generated window, masked image, glyph, TTF strip, status."""
        photo = self.photo(path)
        if not str(polygon_text or "").strip():
            raise ConfigError("no region yet: click its corners on the photo, pick a detected line, or type "
                              "x1,y1,...,x4,y4")
        if seed is None or float(seed) < 0 or float(seed) != int(seed):
            raise ConfigError(f"seed {seed!r}: give a whole number >= 0")
        edit = Edit(parse_polygon_arg(polygon_text), text or "")
        started = time.perf_counter()
        results = self.editor.edit(photo, [edit], variants=int(variants), seed=int(seed), steps=int(steps),
                                   scheduler=sampler)
        repaint = results[0].repaints[0]
        views = conditioning_views(repaint.sample, edit.text)
        gallery = [(to_rgb(r.photo), f"variant {r.index} (seed {int(seed)})") for r in results]
        x0, y0, x1, y1 = repaint.window
        status = (f"repainted {edit.text!r} in {polygon_arg(edit.polygon)}: window {x0},{y0},{x1},{y1} "
                  f"({x1 - x0}x{y1 - y0} px) → {repaint.region.shape[1]}x{repaint.region.shape[0]}, {sampler} x "
                  f"{int(steps)} steps, {len(results)} variant(s) in {time.perf_counter() - started:.1f} s"
                  + (f"; note: {repaint.note}" if repaint.note else ""))
        divider = max(0.0, 100.0 * (float(edit.polygon[:, 0].min()) - DIVIDER_MARGIN) / photo.shape[1])
        return ((to_rgb(photo), to_rgb(results[0].photo)), divider, gallery, enlarge(repaint.region),
                enlarge(views["masked_image"]), enlarge(views["glyph"]), views["ttf_strip"], status)


def guarded(handler, n_outputs: int):
    """``handler`` (whose last output is the status message) with its ConfigError, or any other exception, shown as
    that message instead of a traceback; its other outputs are left as they are."""
    @functools.wraps(handler)  # keeps the signature: gradio passes gr.SelectData by its annotation
    def run(*args):
        try:
            return handler(*args)
        except InputError as exc:
            text = message(str(exc), ok=False)
        except Exception as exc:  # never a traceback in the page: the message, and the traceback on the console
            traceback.print_exc()
            text = message(f"internal error ({type(exc).__name__}: {exc}); see the app's console", ok=False)
        return tuple([gr.skip()] * (n_outputs - 1) + [text])

    return run


# ------------------------------------------------------------------------------------------- layout


def build_app(editor: Editor, finder: Optional[LineFinder] = None, title: str = "TextSSR: edit the text of a photo"):
    """The gradio Blocks of the app (not launched)."""
    handlers = Handlers(editor, finder)
    cfg = editor.cfg
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {title}\nUpload a photo, choose the text region, type the new text, **Generate**. "
                    "Pixels outside the region stay exactly as they are.")
        clicks, lines = gr.State([]), gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                photo = gr.Image(label="Photo", type="filepath", image_mode=None, sources=["upload"],
                                 elem_id="photo", height=160)
                canvas = gr.Image(label="Region: click its corners here", interactive=False, format="png",
                                  elem_id="canvas")
                with gr.Row():
                    mode = gr.Radio([CORNERS, BOX], value=CORNERS, label="Click", elem_id="mode")
                    detect = gr.Button("Detect text", elem_id="detect")
                picked = gr.Dropdown(choices=[], label="Detected lines", elem_id="lines", interactive=True)
                polygon = gr.Textbox(label="Polygon x1,y1,...,x4,y4 (photo pixels)", elem_id="polygon")
                text = gr.Textbox(label="New text", elem_id="text")
                with gr.Row():
                    steps = gr.Slider(1, MAX_STEPS, value=cfg.num_inference_steps, step=1, label="Steps",
                                      elem_id="steps")
                    sampler = gr.Dropdown(sorted(SCHEDULERS), value=cfg.scheduler, label="Sampler",
                                          elem_id="sampler")
                with gr.Row():
                    seed = gr.Number(value=cfg.seed, precision=0, minimum=0, label="Seed", elem_id="seed")
                    variants = gr.Slider(1, 8, value=1, step=1, label="Variants", elem_id="variants")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=4):
                before_after = gr.ImageSlider(label="Before / after", type="numpy", format="png",
                                              elem_id="before_after")
                gallery = gr.Gallery(label="Edited photo, one per variant", format="png", columns=4, height=190,
                                     fit_columns=False, preview=False, object_fit="contain",
                                     elem_id="variants_gallery")
                gr.Markdown("What the model saw and made, at its resolution R:")
                with gr.Row():
                    window = gr.Image(label="Generated R×R window", format="png", elem_id="window", height=220)
                    masked = gr.Image(label="Masked image", format="png", elem_id="masked", height=220)
                    glyph = gr.Image(label="Glyph", format="png", elem_id="glyph", height=220)
                ttf = gr.Image(label="TTF characters (ttf_img)", format="png", elem_id="ttf", height=110)

        def upload(path):
            shown, clicked, chosen, found, note = handlers.on_upload(path)
            return shown, clicked, chosen, found, gr.update(choices=[], value=None), note

        def click(path, clicked, how, found, evt: gr.SelectData):
            return handlers.on_click(path, clicked, how, found, evt.index)

        def detect_lines(path):
            shown, found, choices, note = handlers.on_detect(path)
            return shown, found, gr.update(choices=choices, value=None), note

        photo.change(guarded(upload, 6), [photo], [canvas, clicks, polygon, lines, picked, status])
        canvas.select(guarded(click, 4), [photo, clicks, mode, lines], [canvas, clicks, polygon, status])
        polygon.submit(guarded(handlers.on_polygon, 2), [photo, polygon, lines], [canvas, status])
        polygon.blur(guarded(handlers.on_polygon, 2), [photo, polygon, lines], [canvas, status])
        detect.click(guarded(detect_lines, 4), [photo], [canvas, lines, picked, status])
        picked.input(guarded(handlers.on_pick, 3), [photo, picked, lines], [canvas, polygon, status])
        def generated(*values):
            pair, divider, *rest = handlers.on_generate(*values)
            return (gr.update(value=pair, slider_position=divider), *rest)

        generate.click(guarded(generated, 7), [photo, polygon, text, steps, sampler, seed, variants],
                       [before_after, gallery, window, masked, glyph, ttf, status], concurrency_limit=1)
    return app


def launch(app, host: str, port: int, **kwargs):
    """Serve ``app`` on ``host:port``: no share link, no API/footer links to external sites, nothing fetched."""
    return app.launch(server_name=host, server_port=port, share=False, footer_links=[], run_history=False,
                      enable_monitoring=False, **kwargs)
