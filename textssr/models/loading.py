"""Find, build and load the VAE, the UNet and the scheduler of every stage.

A model setting in a config is one of: a model folder (``.../vae``, ``.../unet``), a folder holding it (an SD 2.1
folder: ``<path>/vae``, ``<path>/unet``, ``<path>/scheduler``), a training output folder (its latest
``checkpoint-<step>/<subfolder>`` is taken), or ``None`` = build fresh from an arch dict (the tiny configs).
Every mistake is a one-line :class:`~textssr.config.ConfigError` naming the path and what was expected.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import List, Optional, Tuple

from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, UNet2DConditionModel, UniPCMultistepScheduler)
from diffusers_textssr import CONV_IN_INITS, TextSSRUNet2DConditionModel

from textssr.config import ConfigError
from textssr.models.arch import SD21_SCHEDULER_CONFIG

# Samplers by name; the original uses DDPM. Diffusers class names ("DDPMScheduler") are accepted too.
TIMESTEP_SPACINGS = (None, "leading", "trailing", "linspace")  # None: keep the scheduler config's
SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler,
              "euler": EulerDiscreteScheduler, "unipc": UniPCMultistepScheduler}
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # .tmp-checkpoint-* (a save in progress) never matches
MODEL_CONFIG, SCHEDULER_CONFIG = "config.json", "scheduler_config.json"  # diffusers' model / scheduler configs


def find_checkpoints(output_dir: str, holding: str = "") -> List[Tuple[int, str]]:
    """The ``checkpoint-<step>`` folders of a training output folder that hold ``holding`` (a path inside the
    checkpoint: ``trainer_state.json`` to resume, ``unet/config.json`` to load a model), as (step, path), oldest
    first. One rule for every caller: our saves are renamed into place when complete, so a checkpoint is what a
    ``checkpoint-<step>`` folder holds; the file a caller needs is what it requires of it."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_RE.match(name)
        if match and os.path.exists(os.path.join(output_dir, name, holding)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def resolve_model_dir(path: str, subfolder: str) -> str:
    """The folder holding the ``subfolder`` model (``"vae"`` or ``"unet"``) that ``path`` names.

    In this order: ``path/subfolder`` if it holds config.json; for a training output folder, the
    ``checkpoint-<step>/subfolder`` of the highest step that holds one (:func:`find_checkpoints`); ``path`` itself
    if it holds config.json.
    """
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
    """AutoencoderKL from ``pretrained_vae`` (see :func:`resolve_model_dir`), or fresh from ``vae_arch`` when it
    is None."""
    if pretrained_vae is None:
        return _build(AutoencoderKL, vae_arch, "vae")
    folder = resolve_model_dir(pretrained_vae, "vae")
    _require_class(folder, ("AutoencoderKL",), "pretrained_vae")
    try:
        return AutoencoderKL.from_pretrained(folder)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"pretrained_vae: cannot load {folder}: {_first_line(exc)}") from exc


def load_unet(pretrained_unet: Optional[str], unet_arch: Optional[dict] = None,
              conv_in_init: str = "sd") -> TextSSRUNet2DConditionModel:
    """TextSSRUNet2DConditionModel from ``pretrained_unet``, or fresh from ``unet_arch`` when it is None.

    The folder may be a TextSSR UNet, one written by the original TextSSR code, or a plain SD 2.1 ``unet/``
    (initialisation: SD weights where they fit, ``conv_in`` widened per ``conv_in_init``, new ``ttf_net``).
    The ``ttf_*`` keys of ``unet_arch``, when given, are the TTF encoder's geometry for folders that cannot say
    it themselves (SD and original layouts); a folder whose weights contradict them is a ConfigError.
    """
    if conv_in_init not in CONV_IN_INITS:
        raise ConfigError(f"conv_in_init={conv_in_init!r}; choose one of {CONV_IN_INITS}")
    if pretrained_unet is None:
        return _build(TextSSRUNet2DConditionModel, unet_arch, "unet")
    folder = resolve_model_dir(pretrained_unet, "unet")
    _require_class(folder, (TextSSRUNet2DConditionModel.__name__, UNet2DConditionModel.__name__), "pretrained_unet")
    ttf = {k: v for k, v in (unet_arch or {}).items() if k.startswith("ttf_")}
    try:
        return TextSSRUNet2DConditionModel.from_pretrained(folder, conv_in_init=conv_in_init, **ttf)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"pretrained_unet: cannot load {folder}: {_first_line(exc)}") from exc


def load_scheduler(scheduler_path: Optional[str] = None, name: str = "ddpm", prediction_type: Optional[str] = None,
                   timestep_spacing: Optional[str] = None):
    """The ``name`` sampler (a key of SCHEDULERS or a diffusers class name) configured from ``scheduler_path`` —
    a folder with scheduler_config.json, or a model folder with ``scheduler/`` — or, when it is None, from
    SD21_SCHEDULER_CONFIG. ``prediction_type`` overrides the config's ("epsilon", "v_prediction", "sample"),
    ``timestep_spacing`` its spacing of the sampling steps ("leading" as SD 2.1, "trailing", "linspace")."""
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
    by_class = {cls.__name__: cls for cls in SCHEDULERS.values()}
    if name in SCHEDULERS or name in by_class:
        return SCHEDULERS.get(name) or by_class[name]
    raise ConfigError(f"scheduler={name!r}; choose one of {sorted(SCHEDULERS)}")


def _build(cls, arch: Optional[dict], kind: str):
    if arch is None:
        raise ConfigError(f"pretrained_{kind} is None and no {kind}_arch is given: name a model folder or set "
                          f"{kind}_arch (e.g. configs/tiny's)")
    try:
        return cls(**arch)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind}_arch: cannot build {cls.__name__}: {_first_line(exc)}") from exc


def _require_class(folder: str, accepted: tuple, key: str) -> None:
    class_name = AutoencoderKL.load_config(folder).get("_class_name")
    if class_name not in accepted:
        raise ConfigError(f"{key}: {folder} holds a {class_name}, expected {' or '.join(accepted)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
