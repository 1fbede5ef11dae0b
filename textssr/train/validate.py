"""Start-up validation of a training config: every mistake is one ConfigError line naming the key, the value and
the fix — raised before any dataset or model is built."""
from __future__ import annotations

import importlib.util
import os

from diffusers import AutoencoderKL

from textssr.config import ConfigError, require_path
from textssr.config.checks import check_output_dir, config_errors
from textssr.data import resolve_font
from textssr.data.lmdb_store import find_environments
from textssr.models import resolve_model_dir
from textssr.models.loading import vae_scale_factor
from textssr.runtime.distributed import use_cpu
from textssr.runtime.precision import check_precision
from textssr.train import checkpoint as ckpt
from textssr.train.data import lmdb_paths
from textssr.train.latent_cache import check_latent_cache
from textssr.train.stages import model_source
from textssr.utils.errors import InputError

SD21_HINT = ("download stabilityai/stable-diffusion-2-1 (diffusers layout: vae/ unet/ scheduler/) into "
             "model/stable-diffusion-v2-1 as the README's 'Checkpoints/Data Preparation' says, or set "
             "pretrained_model_name_or_path=None and give vae_arch/unet_arch to start from random weights")
STAGE_HINTS = {"pretrained_vae": "train it with `train_vae.py --config configs/train_vae_cfg.py` (its output_dir) "
                                 "or point pretrained_vae at a diffusers `vae/` folder",
               "pretrained_unet": "train it with `train_diff.py --config configs/train_diff_step1_cfg.py` (its "
                                  "output_dir) or point pretrained_unet at a diffusers `unet/` folder"}


def validate_config(cfg, stage, mixed) -> None:
    """Raise ConfigError for the first thing in ``cfg`` (a stage's settings, each value already checked for its type
    and range: textssr.train.settings) that cannot work for ``stage`` (a VAEStage/CDMStage): keys that must agree,
    paths, models, the machine. ``mixed``: the resolved mixed precision (textssr.runtime.precision.MixedPrecision)."""
    check_output_dir(cfg.output_dir)
    if cfg.max_train_steps is None and not cfg.num_train_epochs:
        raise ConfigError("set max_train_steps or num_train_epochs (both are empty)")
    check_precision(mixed.name, "mixed_precision", on_cpu=use_cpu(), source=mixed.source)  # the run's device
    if cfg.resume_from_checkpoint and cfg.resume_from_checkpoint != "latest":
        ckpt.resolve_resume(cfg.resume_from_checkpoint, str(cfg.output_dir))
    if stage.name == "cdm":
        _check_timestep_bias(cfg)
        check_latent_cache(cfg)
    for path in lmdb_paths(cfg.lmdb_path):
        with config_errors(InputError, prefix="lmdb_path: ",
                           suffix=" (the tiny corpus: `python -m textssr.data.tiny_data --out data/tiny`)"):
            find_environments(path)
    _require_model(cfg, "pretrained_vae", "vae", "vae_arch")
    _check_resolution(cfg)
    if stage.name == "cdm":
        _require_model(cfg, "pretrained_unet", "unet", "unet_arch")
        scheduler = model_source(cfg, "scheduler_path", "scheduler")
        if scheduler is not None:
            require_path(scheduler, "scheduler_path", SD21_HINT)
    resolve_font(cfg.font_path)  # the configured font, else the registry fallback with a warning
    if cfg.use_8bit_adam and cfg.adam_fused:
        raise ConfigError("use_8bit_adam=True with adam_fused=True: bitsandbytes' AdamW8bit has no fused kernel "
                          "(it takes no `fused`); set one of them to False")
    if cfg.use_8bit_adam and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("use_8bit_adam=True needs bitsandbytes: `pip install bitsandbytes` (CUDA only), "
                          "or set use_8bit_adam=False")
    _check_combinations(cfg, stage)


def _check_combinations(cfg, stage) -> None:
    """Options that are fine alone but crash together once the models are built."""
    if cfg.lr_scheduler == "piecewise_constant":
        raise ConfigError("lr_scheduler=\"piecewise_constant\" needs step rules, which these configs cannot give; "
                          "choose another schedule (constant, constant_with_warmup, cosine, linear, ...)")
    resume = ckpt.resolve_resume(cfg.resume_from_checkpoint, str(cfg.output_dir))
    if resume and cfg.use_ema and not os.path.isdir(os.path.join(resume, f"{stage.subfolder}_ema")):
        raise ConfigError(f"use_ema=True but {resume} was written without EMA ({stage.subfolder}_ema/ is missing): "
                          "resume with use_ema=False, or from a checkpoint that has it, or start a new output_dir")
    if cfg.use_8bit_adam and use_cpu():
        raise ConfigError("use_8bit_adam=True needs a GPU (bitsandbytes' 8-bit optimizer states live on CUDA) and "
                          "this run is on the CPU (no GPU, or ACCELERATE_USE_CPU / --cpu); set use_8bit_adam=False")


def _check_timestep_bias(cfg) -> None:
    """The biased-timestep keys must agree (each is in range already)."""
    if cfg.timestep_bias_strategy == "range" and not cfg.timestep_bias_begin < cfg.timestep_bias_end:
        raise ConfigError(f"timestep_bias_begin={cfg.timestep_bias_begin}, timestep_bias_end={cfg.timestep_bias_end}; "
                          "need 0 <= begin < end")


def _check_resolution(cfg) -> None:
    """The crops must be a multiple of the VAE's downsampling factor (its config says it: 8 for SD 2.1's)."""
    source = model_source(cfg, "pretrained_vae", "vae")
    config = cfg.vae_arch if source is None else AutoencoderKL.load_config(resolve_model_dir(source, "vae"))
    factor = vae_scale_factor(config)
    if cfg.resolution % factor:
        raise ConfigError(f"resolution={cfg.resolution}; must be a multiple of {factor}, the VAE's downsampling "
                          "factor")


def _require_model(cfg, key: str, subfolder: str, arch_key: str) -> None:
    """A model path must exist and hold a ``subfolder`` model (directly or in a checkpoint); None needs an arch."""
    source = model_source(cfg, key, subfolder)
    if source is None:
        if not getattr(cfg, arch_key):
            raise ConfigError(f"{key}=None and pretrained_model_name_or_path=None: set {arch_key} (an architecture "
                              f"dict) to build a random {subfolder}, or point {key} at a model folder")
        return
    from_sd = not getattr(cfg, key)
    hint = SD21_HINT if from_sd else STAGE_HINTS[key]
    require_path(source, "pretrained_model_name_or_path" if from_sd else key, hint)
    with config_errors(FileNotFoundError, ValueError, OSError, prefix=f"{key}: ", suffix=f" — {hint}"):
        resolve_model_dir(source, subfolder)
