"""Find, build and load the VAE, the UNet and the scheduler of every stage.

A model setting in a config is one of: a model folder (``.../vae``, ``.../unet``), a folder holding it (an SD 2.1
folder: ``<path>/vae``, ``<path>/unet``, ``<path>/scheduler``), a training output folder (its latest
``checkpoint-<step>/<subfolder>`` is taken), or ``None`` = build fresh from an arch dict (the tiny configs).
Every mistake is a one-line :class:`~textssr.config.ConfigError` naming the path and what was expected.
"""
from __future__ import annotations

import itertools
import os
import re
import warnings
from typing import List, Optional, Tuple

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, UNet2DConditionModel, UniPCMultistepScheduler)
from diffusers_textssr import CONV_IN_INITS, TextSSRUNet2DConditionModel

from textssr.config.checks import config_errors
from textssr.config import ConfigError, check_choice
from textssr.models.arch import SD21_SCHEDULER_CONFIG

# Samplers by name; the original uses DDPM. Diffusers class names ("DDPMScheduler") are accepted too.
TIMESTEP_SPACINGS = (None, "leading", "trailing", "linspace")  # None: keep the scheduler config's
SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler,
              "euler": EulerDiscreteScheduler, "unipc": UniPCMultistepScheduler}
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # .tmp-checkpoint-* (a save in progress) never matches
MODEL_CONFIG, SCHEDULER_CONFIG = "config.json", "scheduler_config.json"  # diffusers' model / scheduler configs


def find_checkpoints(output_dir: str, holding: str = "") -> List[Tuple[int, str]]:
    """The ``checkpoint-<step>`` folders of ``output_dir`` holding ``holding`` (``trainer_state.json`` to resume,
    ``unet/config.json`` to load a model), as (step, path), oldest first. Saves are renamed into place when
    complete, so a ``checkpoint-<step>`` folder is a checkpoint; a caller requires of it the file it needs."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_RE.match(name)
        if match and os.path.exists(os.path.join(output_dir, name, holding)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def resolve_model_dir(path: str, subfolder: str) -> str:
    """The folder holding the ``subfolder`` model (``"vae"`` or ``"unet"``) that ``path`` names, in this order:
    ``path/subfolder``; a training output folder's newest ``checkpoint-<step>/subfolder``; ``path`` itself."""
    path = str(path)
    if not os.path.isdir(path):
        raise ConfigError(f"{path}: no such folder (expected a {subfolder} model folder, a folder holding "
                          f"{subfolder}/, or a training output folder with checkpoint-<step>/{subfolder}/)")
    nested = os.path.join(path, subfolder)
    if os.path.isfile(os.path.join(nested, MODEL_CONFIG)):
        return nested
    complete = find_checkpoints(path, os.path.join(subfolder, MODEL_CONFIG))
    if complete:
        newest, chosen = os.path.basename(find_checkpoints(path)[-1][1]), os.path.basename(complete[-1][1])
        if chosen != newest:
            warnings.warn(f"{path}: {newest} holds no {subfolder}/{MODEL_CONFIG}; using {chosen}", stacklevel=2)
        return os.path.join(complete[-1][1], subfolder)
    if os.path.isfile(os.path.join(path, MODEL_CONFIG)):
        return path
    raise ConfigError(f"{path}: holds neither {MODEL_CONFIG}, {subfolder}/{MODEL_CONFIG} nor "
                      f"checkpoint-<step>/{subfolder}/{MODEL_CONFIG} (expected a {subfolder} model folder or a "
                      "training output folder)")


def vae_scale_factor(vae_config) -> int:
    """The VAE's downsampling factor from its config (a dict or an AutoencoderKL config): 2 ** (levels − 1)."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def scheduler_folder(path: Optional[str]) -> Optional[str]:
    """The folder holding ``scheduler_config.json`` that ``path`` names (``path/scheduler`` or ``path``), or None."""
    if not path:
        return None
    return next((f for f in (os.path.join(str(path), "scheduler"), str(path))
                 if os.path.isfile(os.path.join(f, SCHEDULER_CONFIG))), None)


def load_vae(pretrained_vae: Optional[str], vae_arch: Optional[dict] = None) -> AutoencoderKL:
    """AutoencoderKL from ``pretrained_vae`` (:func:`resolve_model_dir`), or fresh from ``vae_arch`` if None."""
    return _load(AutoencoderKL, pretrained_vae, vae_arch, "vae", ("AutoencoderKL",))


def cast_model(model, dtype: torch.dtype, device=None):
    """``model`` (a diffusers model) on ``device`` with its floating-point weights in ``dtype``, cast as diffusers'
    ``from_pretrained(torch_dtype=...)`` casts them: every tensor but those of the modules the class keeps in float32
    (``_keep_in_fp32_modules``). Diffusers' own ``model.to(dtype)`` warns on every cast, even of a class that keeps
    none (AutoencoderKL: "modules ... that should be kept in float32: []"), and asks for this. Returns ``model``."""
    if device is not None:
        model.to(device)  # no dtype: no warning
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())  # a plain torch module keeps none
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if tensor.is_floating_point() and tensor.dtype != dtype and not any(k in name.split(".") for k in keep):
                tensor.data = tensor.data.to(dtype)
    return model


def load_unet(pretrained_unet: Optional[str], unet_arch: Optional[dict] = None,
              conv_in_init: str = "sd") -> TextSSRUNet2DConditionModel:
    """TextSSRUNet2DConditionModel from ``pretrained_unet``, or fresh from ``unet_arch`` when it is None.

    The folder may be a TextSSR UNet, one written by the original TextSSR code, or a plain SD 2.1 ``unet/``
    (initialisation: SD weights where they fit, ``conv_in`` widened per ``conv_in_init``, new ``ttf_net``).
    The ``ttf_*`` keys of ``unet_arch`` give the TTF encoder's geometry to folders that cannot say it (SD and
    original layouts); a folder whose weights contradict them is a ConfigError.
    """
    check_choice(conv_in_init, "conv_in_init", CONV_IN_INITS)
    ttf = {k: v for k, v in (unet_arch or {}).items() if k.startswith("ttf_")}
    return _load(TextSSRUNet2DConditionModel, pretrained_unet, unet_arch, "unet",
                 (TextSSRUNet2DConditionModel.__name__, UNet2DConditionModel.__name__), conv_in_init=conv_in_init,
                 **ttf)


def _load(cls, path: Optional[str], arch: Optional[dict], kind: str, accepted: tuple, **kwargs):
    """``cls`` from the ``kind`` model folder ``path`` names (holding one of the ``accepted`` classes), or built
    from ``arch`` when ``path`` is None."""
    if path is None:
        if arch is None:
            raise ConfigError(f"pretrained_{kind} is None and no {kind}_arch is given: name a model folder or set "
                              f"{kind}_arch (e.g. configs/tiny's)")
        with config_errors(TypeError, ValueError, prefix=f"{kind}_arch: cannot build {cls.__name__}: ", brief=True):
            return cls(**arch)
    folder = resolve_model_dir(path, kind)
    class_name = AutoencoderKL.load_config(folder).get("_class_name")
    if class_name not in accepted:
        raise ConfigError(f"pretrained_{kind}: {folder} holds a {class_name}, expected {' or '.join(accepted)}")
    with config_errors(OSError, ValueError, RuntimeError, prefix=f"pretrained_{kind}: cannot load {folder}: ",
                       brief=True):
        return cls.from_pretrained(folder, **kwargs)


def load_scheduler(scheduler_path: Optional[str] = None, name: str = "ddpm", prediction_type: Optional[str] = None,
                   timestep_spacing: Optional[str] = None):
    """The ``name`` sampler (:func:`scheduler_class`) configured from ``scheduler_path`` (:func:`scheduler_folder`;
    None: SD21_SCHEDULER_CONFIG); ``prediction_type`` ("epsilon", "v_prediction", "sample") and
    ``timestep_spacing`` ("leading" as SD 2.1, "trailing", "linspace") override the config's."""
    cls = scheduler_class(name)
    if scheduler_path is None:
        config = dict(SD21_SCHEDULER_CONFIG)
    else:
        folder = scheduler_folder(scheduler_path)
        if folder is None:
            raise ConfigError(f"scheduler_path: {scheduler_path} holds no {SCHEDULER_CONFIG} nor "
                              f"scheduler/{SCHEDULER_CONFIG} (or set it to None for SD 2.1's schedule)")
        config = dict(cls.load_config(folder))
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    if timestep_spacing is not None:
        config["timestep_spacing"] = timestep_spacing
    return cls.from_config(config)


def scheduler_class(name: str):
    """The scheduler class for ``name``: a key of SCHEDULERS or one of their class names."""
    cls = SCHEDULERS.get(name) or {cls.__name__: cls for cls in SCHEDULERS.values()}.get(name)
    if cls is None:
        raise ConfigError(f"scheduler={name!r}; choose one of {sorted(SCHEDULERS)}")
    return cls
