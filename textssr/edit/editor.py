"""Repaint text regions of a whole photo: photo → window → sample → TextSSRPipeline → composite.

The model part is infer.py's own (``textssr.generation``): the same config checks, pipeline, sizes and denoising
call; each region is built as infer.py builds a bench instance with ``region_placement="center"``.

Determinism. Variant ``v`` draws its initial latents (and a stochastic sampler's per-step noise) from the latent
generator infer.py gives instance ``v`` (``item_torch_generator(seed, v, stream=1)``), fresh for each of its edits:
the same seed gives the same output bytes.
The variants of one edit are denoised as one batch; like infer.py's batch size, the number of variants can change a
generated pixel by one gray level (CPU float summation order), nothing else.

Several edits apply in turn: edit k+1 is built from the photo edit k returned (per variant).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch

from textssr.config.checks import as_int
from textssr.config import ConfigError
from textssr.data.fonts import resolve_font
from textssr.data.seeding import item_torch_generator
from textssr.edit.region import DILATE_PX, build_sample, check_polygon, check_text, composite, polygon_arg
from textssr.generation import check_memory, denoise, load_pipeline, resolve_run
from textssr.infer.settings import InferSettings
from textssr.models import SCHEDULERS, load_scheduler
from textssr.config.settings import require_settings
from textssr.runtime import distributed


PROBE_TTF_SIZE, PROBE_MAX_LEN = 8, 1  # sizes of the geometry-only sample built to check a region before loading
MAX_VARIANTS = 16


@dataclass
class Edit:
    """One requested edit: the text ``polygon`` float (N, 2) in photo pixels and its new ``text``."""
    polygon: np.ndarray
    text: str


@dataclass
class Repaint:
    """What one edit did to one variant: the ``window`` (x0, y0, x1, y1) in photo pixels, the ``sample`` the model
    saw (method.md §3 tensors), and the generated ``region`` uint8 RGB (R, R, 3); ``note``: what the user should know
    (a text longer than max_len, of which only the first max_len characters were encoded)."""
    edit: Edit
    window: tuple
    sample: dict
    region: np.ndarray
    note: str = ""


@dataclass
class Variant:
    """Variant ``index``: the edited ``photo`` (uint8 BGR (H, W, 3), the input's size) and its repaints in order."""
    index: int
    photo: np.ndarray
    repaints: List[Repaint] = field(default_factory=list)


def check_config(cfg, device: torch.device):
    """The generation checks of infer.py on an edit's settings (models, sizes, sampler, precision, and that one
    variant fits in memory), before anything loads."""
    run = resolve_run(cfg, device.type == "cpu")
    check_memory(run, 1, device, "num_variants")
    return run


class Editor:
    """Edits photos with one loaded pipeline. Checks run at construction (config) and in :meth:`check` (edits),
    before the models load; the pipeline loads on first :meth:`edit` (or :meth:`load`), once per process."""

    def __init__(self, cfg: InferSettings, dilate: int = DILATE_PX):
        require_settings(cfg, InferSettings, "Editor")
        self.cfg = cfg
        self.device = distributed.device_of(cfg.device)
        self.run = check_config(cfg, self.device)
        self.font_path = resolve_font(cfg.font_path)
        self.dilate = as_int(dilate, "dilate", minimum=0)
        self.pipe = None
        self._schedulers = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ checks
    def check(self, photo: np.ndarray, edits: Sequence[Edit]) -> None:
        """Refuse, with one line naming the input and the fix, an edit that cannot work: a corner outside the photo,
        an empty or undrawable text, a region outside the photo's content or too small to survive the R×R resize."""
        if not edits:
            raise ConfigError("no region to edit; give --polygon x1,y1,...,x4,y4 (or --find OLD) and --text NEW")
        for k, edit in enumerate(edits):
            where = f"region {k + 1}" if len(edits) > 1 else "region"
            check_polygon(edit.polygon, photo.shape, where)
            check_text(edit.text, self.font_path)
            build_sample(photo, edit.polygon, edit.text, resolution=self.run.resolution,
                         ttf_size=self.run.ttf_size or PROBE_TTF_SIZE, max_len=self.run.max_len or PROBE_MAX_LEN,
                         font_path=self.font_path)

    def truncation_note(self, text: str) -> str:
        """What to tell the user about a text longer than the model's max_len ("" when it fits)."""
        max_len = self.run.max_len
        if max_len is None or len(text) <= max_len:
            return ""
        return (f"text {text!r} has {len(text)} characters; the model encodes only the first {max_len} (max_len) "
                f"in its character images: {text[:max_len]!r}")

    @staticmethod
    def check_sampling(variants: int, seed, steps, scheduler: str) -> None:
        as_int(variants, "num_variants", minimum=1)
        if variants > MAX_VARIANTS:
            raise ConfigError(f"num_variants={variants}: at most {MAX_VARIANTS} per call")
        as_int(seed, "seed", minimum=0)
        as_int(steps, "num_inference_steps", minimum=1)
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler={scheduler!r}; choose one of {sorted(SCHEDULERS)}")

    # ------------------------------------------------------------------ models
    def load(self):
        """The pipeline, loaded on the first call (thread-safe)."""
        with self._lock:
            if self.pipe is None:
                pipe, self.run = load_pipeline(self.run, self.cfg, self.device)  # "auto" precision settled
                self._schedulers[self.cfg.scheduler] = pipe.scheduler
                self.pipe = pipe
        return self.pipe

    def _use_scheduler(self, name: str) -> None:
        if name not in self._schedulers:
            self._schedulers[name] = load_scheduler(self.run.scheduler_dir, name,
                                                    timestep_spacing=self.cfg.timestep_spacing)
        self.pipe.scheduler = self._schedulers[name]

    # ------------------------------------------------------------------ editing
    def edit(self, photo: np.ndarray, edits: Sequence[Edit], variants: int = 1, seed: Optional[int] = None,
             steps: Optional[int] = None, scheduler: Optional[str] = None) -> List[Variant]:
        """``variants`` edited copies of ``photo`` (uint8 BGR (H, W, 3)), each with every edit applied in turn.
        ``seed``/``steps``/``scheduler`` default to the config's (seed, num_inference_steps, scheduler)."""
        seed = self.cfg.seed if seed is None else seed
        steps = self.cfg.num_inference_steps if steps is None else steps
        scheduler = scheduler or self.cfg.scheduler
        self.check_sampling(variants, seed, steps, scheduler)
        self.check(photo, edits)
        check_memory(self.run, int(variants), self.device, "num_variants")  # the variants denoise as one batch
        self.load()
        results = [Variant(v, photo) for v in range(int(variants))]
        with self._lock:  # one denoising at a time: the pipeline and its scheduler are shared
            self._use_scheduler(scheduler)
            for edit in edits:
                self._repaint(results, edit, int(seed), int(steps))
        return results

    def _repaint(self, results: List[Variant], edit: Edit, seed: int, steps: int) -> None:
        run = self.run
        built = [build_sample(variant.photo, edit.polygon, edit.text, resolution=run.resolution,
                              ttf_size=run.ttf_size, max_len=run.max_len, font_path=self.font_path)
                 for variant in results]
        generators = [item_torch_generator(seed, variant.index, stream=1) for variant in results]
        regions = denoise(self.pipe, run, [sample for sample, _ in built], generators, steps, self.device)
        for variant, (sample, window), region in zip(results, built, regions):
            variant.photo = composite(variant.photo, window, region, edit.polygon, self.dilate)
            variant.repaints.append(Repaint(edit, window, sample, region, self.truncation_note(edit.text)))


def describe_repaint(repaint: Repaint) -> str:
    x0, y0, x1, y1 = repaint.window
    return (f"{repaint.edit.text!r} in {polygon_arg(repaint.edit.polygon)} (window {x0},{y0},{x1},{y1}, "
            f"{x1 - x0}x{y1 - y0} px → {repaint.region.shape[1]}x{repaint.region.shape[0]})")
