"""Settling a generation run: the sampling settings' checkpoints, scheduler folder, condition sizes and precision
resolved and checked together (:func:`resolve_run`), before anything is loaded or written.

Checkpoints may be model folders or training output folders (their latest checkpoint); ``resolution`` /
``ttf_size`` / ``max_len`` set to None take the UNet's training values (its checkpoint's training config, read as
data; ttf_size and max_len else from its TTF encoder). Every mistake is a one-line ConfigError raised before a
model loads.
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from diffusers_textssr import TextSSRUNet2DConditionModel, unet_layout
from diffusers_textssr.unet import checkpoint_shapes, ttf_geometry_from_weights

from textssr.config.checks import as_int, config_errors
from textssr.config import ConfigError, require_path
from textssr.config.run_config import read_run_config
from textssr.data.fonts import resolve_font
from textssr.models import resolve_model_dir
from textssr.models.loading import scheduler_folder, vae_scale_factor
from textssr.runtime.precision import DTYPES, MixedPrecision, check_precision, resolve_mixed_precision

SIZE_KEYS = ("resolution", "ttf_size", "max_len")  # None in a config: the UNet's training value
FAR_RESOLUTION = 4  # a resolution more than this factor from the UNet's training value needs allow_far_resolution


@dataclass(frozen=True)
class Run:
    """The checked, resolved settings of one generation run."""
    vae_dir: str
    unet_dir: str
    scheduler_dir: Optional[str]
    dtype: Optional[torch.dtype]  # None: mixed_precision="auto", settled when the pipeline is loaded
    resolution: int
    ttf_size: Optional[int]  # None until the UNet is loaded (its TTF encoder's geometry)
    max_len: Optional[int]
    resolved: dict  # checkpoint folders, scheduler folder and sizes as resolved (part of the resume settings)
    precision: Optional[dict] = None  # how mixed_precision="auto" was settled
    mixed: Optional[MixedPrecision] = None  # the mixed-precision setting and where it came from

    def sizes(self) -> Dict[str, Optional[int]]:
        """resolution, ttf_size and max_len, as the dataset keywords and meta.json's conditions name them."""
        return dict(resolution=self.resolution, ttf_size=self.ttf_size, max_len=self.max_len)


def resolve_run(cfg, on_cpu: bool) -> Run:
    """Resolve what the sampling settings (textssr.generation.settings: every value already checked) name —
    precision, checkpoints, scheduler, sizes, font — and check that they fit together, before anything is loaded
    or written."""
    mixed = resolve_mixed_precision(cfg.mixed_precision)  # None: accelerate's setting
    precision = check_precision(mixed.name, "mixed_precision", on_cpu, source=mixed.source)
    vae_dir = resolve_checkpoint(cfg.pretrained_vae, "pretrained_vae", "vae")
    unet_dir = resolve_checkpoint(cfg.pretrained_unet, "pretrained_unet", "unet")
    scheduler_dir = resolve_scheduler_dir(cfg.scheduler_path, unet_dir)
    sizes = condition_sizes(cfg, unet_dir)
    check_far_resolution(sizes["resolution"], trained_resolution(unet_dir, vae_dir), cfg)
    resolve_font(cfg.font_path)  # a file that is not a font fails here, before any model loads
    resolved = dict(sizes, pretrained_vae=os.path.abspath(vae_dir), pretrained_unet=os.path.abspath(unet_dir),
                    scheduler_path=os.path.abspath(scheduler_dir) if scheduler_dir else None)
    if cfg.mixed_precision is None:
        resolved["mixed_precision"] = precision  # what accelerate's setting said: part of the resume rule
    # ttf_size / max_len the UNet's TTF encoder fixes, known before it loads (data is read before the models)
    encoder = encoder_geometry(unet_dir)
    if sizes["ttf_size"] is None:
        sizes["ttf_size"] = encoder["ttf_img_size"]
    if sizes["max_len"] is None:
        sizes["max_len"] = encoder["ttf_in_chans"]
    return Run(vae_dir, unet_dir, scheduler_dir, DTYPES.get(precision), resolved=resolved, mixed=mixed, **sizes)


def encoder_geometry(unet_dir: str) -> Dict[str, int]:
    """ttf_img_size and ttf_in_chans of the TTF encoder the UNet folder loads as, read without loading it: its
    config (our layout), its ttf_net weights' shapes (the original's), else the encoder's defaults (SD 2.1's unet,
    which gets a new encoder)."""
    defaults = {k: p.default for k, p in inspect.signature(TextSSRUNet2DConditionModel.__init__).parameters.items()
                if k.startswith("ttf_")}
    with config_errors(OSError, ValueError, KeyError, prefix=f"pretrained_unet: {unet_dir}: ", brief=True):
        layout = unet_layout(unet_dir)
        if layout == "textssr":
            with open(os.path.join(unet_dir, "config.json"), encoding="utf-8") as f:
                found = json.load(f)
        elif layout == "original":
            found = ttf_geometry_from_weights(checkpoint_shapes(unet_dir))
        else:
            found = {}
    return {k: int(found.get(k, defaults[k])) for k in ("ttf_img_size", "ttf_in_chans")}


def model_config(folder: str) -> dict:
    with config_errors(OSError, ValueError, prefix=f"{folder}: cannot read config.json: ", brief=True):
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            return json.load(f)


def trained_resolution(unet_dir: str, vae_dir: str) -> Optional[int]:
    """The resolution the UNet was trained at: its training config's, else its latent ``sample_size`` times the
    VAE's downsampling factor (what diffusers models record); None when neither is known."""
    trained = read_run_config(os.path.dirname(os.path.abspath(unet_dir))).get("resolution")
    if trained is not None:
        return int(trained)
    sample_size = model_config(unet_dir).get("sample_size")
    if isinstance(sample_size, int):
        return sample_size * vae_scale_factor(model_config(vae_dir))
    return None


def check_far_resolution(resolution: int, trained: Optional[int], cfg) -> None:
    """Refuse a resolution more than FAR_RESOLUTION times larger or smaller than the UNet's training value unless
    ``allow_far_resolution`` (nearer ones are warned about in :func:`condition_sizes`)."""
    allow = cfg.allow_far_resolution
    if not isinstance(allow, bool):
        raise ConfigError(f"allow_far_resolution={allow!r}: must be True or False")
    if trained and not allow and not trained / FAR_RESOLUTION <= resolution <= trained * FAR_RESOLUTION:
        raise ConfigError(f"resolution={resolution} is more than {FAR_RESOLUTION}x from the UNet's training value "
                          f"{trained}: its output would be meaningless and its memory grows with resolution²; use "
                          f"resolution={trained} (or None), or set allow_far_resolution=True")


def resolve_checkpoint(path: str, key: str, subfolder: str) -> str:
    """A model folder (or training output folder → latest checkpoint) for ``key``, as a ConfigError if absent."""
    require_path(path, key, f"a `{subfolder}` model folder or a training output folder with checkpoint-*/{subfolder}")
    with config_errors(FileNotFoundError, ValueError, OSError, prefix=f"{key}: "):
        return str(resolve_model_dir(path, subfolder))


def resolve_scheduler_dir(path: Optional[str], unet_dir: str) -> Optional[str]:
    """The folder holding scheduler_config.json: ``path``'s ``scheduler/`` or ``path`` itself; else the
    ``scheduler/`` saved in the UNet's training checkpoint; else None = the built-in SD 2.1 config (warned)."""
    folder = scheduler_folder(path)
    if folder is not None:
        return folder
    trained = scheduler_folder(os.path.join(os.path.dirname(os.path.abspath(unet_dir)), "scheduler"))
    if trained is not None:
        print(f"scheduler: the one the UNet was trained with, {trained}"
              + (f" ({path} holds no scheduler_config.json)" if path else ""))
        return trained
    warnings.warn(f"scheduler_path={path!r} holds no scheduler_config.json; using the built-in SD 2.1 scheduler "
                  "config (scaled-linear betas 0.00085-0.012, 1000 steps, v-prediction)", stacklevel=2)
    return None


def condition_sizes(cfg, unet_dir: str) -> Dict[str, Optional[int]]:
    """resolution, ttf_size, max_len: the config's value or, where it is None, the UNet's training value (its
    checkpoint's training config, read as data; said on stdout). ttf_size/max_len without either stay None here and
    are the UNet's TTF encoder's, read from its folder by :func:`resolve_run` (:func:`check_text_encoder` checks
    them once it is loaded). A set value unlike the
    training one is warned about: running at another resolution is legitimate."""
    trained = read_run_config(os.path.dirname(os.path.abspath(unet_dir)))
    sizes = {}
    for key in SIZE_KEYS:
        value, was = getattr(cfg, key), trained.get(key)
        if value is None and was is not None:
            print(f"{key}={was}, from the UNet's training config in {os.path.dirname(unet_dir)}")
            value = was
        elif value is not None and was is not None and int(was) != int(value):
            warnings.warn(f"{key}={value} differs from the UNet's training value {was}", stacklevel=2)
        if value is None and key == "resolution":
            raise ConfigError(f"resolution=None asks for the UNet's training value, but no training config beside "
                              f"{unet_dir} names it; set --cfg-options resolution=...")
        sizes[key] = as_int(value, key, minimum=1, allow_none=True)
    return sizes
