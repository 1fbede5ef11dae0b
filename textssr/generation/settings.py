"""The sampling settings infer.py, synthesize.py, edit.py and the app share (configs/sampling_cfg.py), checked and
cast once at start-up (textssr.config.settings); each script's settings class adds its own keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from textssr.config.settings import Boolean, Choice, Integer, Number, Settings, Text, setting
from textssr.data.anyword import PLACEMENTS
from textssr.models import SCHEDULERS, TIMESTEP_SPACINGS
from textssr.runtime.precision import SETTING_VALUES as MIXED_PRECISIONS



@dataclass(frozen=True)
class SamplingSettings(Settings):
    """Checkpoints, sampler, precision, conditions and bad-input rules of a generation run (configs/sampling_cfg.py).
    ``resume=False``: a rerun over the same output folder may change it."""
    SCHEMA = "sampling_cfg.py"
    language: Optional[str] = setting(Text(optional=True, what="a language name such as 'Latin' or 'Chinese'"))
    output_dir: str = setting(Text(what="a folder path"), resume=False)
    pretrained_vae: str = setting(Text(what="a vae/ model folder or a training output folder"))
    pretrained_unet: str = setting(Text(what="a unet/ model folder or a training output folder"))
    scheduler_path: Optional[str] = setting(Text(optional=True, what="a folder"))
    scheduler: str = setting(Choice(*sorted(SCHEDULERS)))
    timestep_spacing: Optional[str] = setting(Choice(*TIMESTEP_SPACINGS))
    num_inference_steps: int = setting(Integer(1))
    batch_size: int = setting(Integer(1))
    seed: int = setting(Integer(0))
    mixed_precision: Optional[str] = setting(Choice(*MIXED_PRECISIONS, hint="(None: accelerate's setting)"))
    allow_tf32: bool = setting(Boolean())
    ddp_timeout: float = setting(Number(0, exclusive=True), resume=False)
    resolution: Optional[int] = setting(Integer(1, optional=True))
    ttf_size: Optional[int] = setting(Integer(1, optional=True))
    max_len: Optional[int] = setting(Integer(1, optional=True))
    font_path: str = setting(Text())
    region_placement: str = setting(Choice(*PLACEMENTS))
    allow_far_resolution: bool = setting(Boolean(), resume=False)
    strict: bool = setting(Boolean(), resume=False)
    allow_images_outside_root: bool = setting(Boolean())
