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
from typing import Optional

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, UNet2DConditionModel, UniPCMultistepScheduler)
from diffusers_textssr import CONV_IN_INITS, TextSSRUNet2DConditionModel

from textssr.config import ConfigError
from textssr.models.arch import SD21_SCHEDULER_CONFIG, TINY_UNET_ARCH, TINY_VAE_ARCH

# Samplers by name; the original uses DDPM. Diffusers class names ("DDPMScheduler") are accepted too.
TIMESTEP_SPACINGS = (None, "leading", "trailing", "linspace")  # None: keep the scheduler config's
SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler,
              "euler": EulerDiscreteScheduler, "unipc": UniPCMultistepScheduler}
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # checkpoint-*.tmp and other partial folders do not match
CONFIG_FILE, SCHEDULER_CONFIG_FILE = "config.json", "scheduler_config.json"


def resolve_model_dir(path: str, subfolder: str) -> str:
    """The folder holding the ``subfolder`` model (``"vae"`` or ``"unet"``) that ``path`` names.

    In this order: ``path/subfolder`` if it holds config.json; for a training output folder, the
    ``checkpoint-<step>/subfolder`` of the highest step that holds one (temporary and incomplete checkpoints
    are passed over); ``path`` itself if it holds config.json.
    """
    path = str(path)
    if not os.path.isdir(path):
        raise ConfigError(f"{path}: no such folder (expected a {subfolder} model folder, a folder holding "
                          f"{subfolder}/, or a training output folder with checkpoint-<step>/{subfolder}/)")
    nested = os.path.join(path, subfolder)
    if os.path.isfile(os.path.join(nested, CONFIG_FILE)):
        return nested
    steps = sorted((int(m.group(1)), name) for name in os.listdir(path) if (m := CHECKPOINT_RE.match(name)))
    complete = [name for _, name in steps if os.path.isfile(os.path.join(path, name, subfolder, CONFIG_FILE))]
    if complete:
        if complete[-1] != steps[-1][1]:
            warnings.warn(f"{path}: {steps[-1][1]} holds no {subfolder}/{CONFIG_FILE}; using {complete[-1]}",
                          stacklevel=2)
        return os.path.join(path, complete[-1], subfolder)
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return path
    raise ConfigError(f"{path}: holds neither {CONFIG_FILE}, {subfolder}/{CONFIG_FILE} nor "
                      f"checkpoint-<step>/{subfolder}/{CONFIG_FILE} (expected a {subfolder} model folder or a "
                      "training output folder)")


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
        folder = next((f for f in (os.path.join(str(scheduler_path), "scheduler"), str(scheduler_path))
                       if os.path.isfile(os.path.join(f, SCHEDULER_CONFIG_FILE))), None)
        if folder is None:
            raise ConfigError(f"scheduler_path: {scheduler_path} holds no {SCHEDULER_CONFIG_FILE} nor "
                              f"scheduler/{SCHEDULER_CONFIG_FILE} (or set it to None for SD 2.1's schedule)")
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


def save_tiny_sd21(path: str, vae_arch: dict = TINY_VAE_ARCH, unet_arch: dict = TINY_UNET_ARCH, seed: int = 0) -> str:
    """Write a random model in SD 2.1's folder layout — ``vae/``, ``unet/`` (a plain 4-channel
    UNet2DConditionModel, as SD ships it) and ``scheduler/`` — for tests and the tiny demo. The same ``seed``
    writes the same weights. Returns ``path``."""
    unet_config = {k: v for k, v in unet_arch.items() if not k.startswith("ttf_")}
    unet_config["in_channels"] = vae_arch.get("latent_channels", 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae, unet = AutoencoderKL(**vae_arch), UNet2DConditionModel(**unet_config)
    vae.save_pretrained(os.path.join(path, "vae"))
    unet.save_pretrained(os.path.join(path, "unet"))
    DDIMScheduler.from_config(SD21_SCHEDULER_CONFIG).save_pretrained(os.path.join(path, "scheduler"))
    return path


def _build(cls, arch: Optional[dict], kind: str):
    if arch is None:
        raise ConfigError(f"pretrained_{kind} is None and no {kind}_arch is given: name a model folder or set "
                          f"{kind}_arch (e.g. textssr.models.TINY_{kind.upper()}_ARCH)")
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
