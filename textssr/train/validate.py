"""Start-up validation of a training config: every mistake is one ConfigError line naming the key, the value and
the fix — raised before any dataset or model is built."""
from __future__ import annotations

import importlib.util
import os

import torch
from diffusers import AutoencoderKL
from diffusers.optimization import SchedulerType
from diffusers_textssr import CONV_IN_INITS

from textssr.runtime import distributed
from textssr.config.checks import as_float, as_int, check_output_dir, check_seed, config_errors
from textssr.config import ConfigError, check_choice, require_keys, require_path
from textssr.data import resolve_font
from textssr.data.lmdb_store import find_environments
from textssr.train.latent_cache import check_latent_cache
from textssr.models import SCHEDULERS, TIMESTEP_SPACINGS, resolve_model_dir
from textssr.models.loading import vae_scale_factor
from textssr.runtime.precision import check_precision
from textssr.train import checkpoint as ckpt
from textssr.train.data import lmdb_paths
from textssr.train.stages import TIMESTEP_BIAS_STRATEGIES, model_source
from textssr.utils.errors import InputError

REQUIRED = ("lmdb_path", "output_dir", "seed", "resolution", "ttf_size", "max_len", "train_batch_size",
            "gradient_accumulation_steps", "learning_rate", "lr_scheduler", "checkpointing_steps")
VAE_DTYPES = (None, "fp32", "bf16", "auto")
PREDICTION_TYPES = (None, "epsilon", "v_prediction", "sample")
VAE_LATENTS = ("sample", "mode")
REPORTERS = (None, "none", "tensorboard")

SD21_HINT = ("download stabilityai/stable-diffusion-2-1 (diffusers layout: vae/ unet/ scheduler/) into "
             "model/stable-diffusion-v2-1 as the README's 'Checkpoints/Data Preparation' says, or set "
             "pretrained_model_name_or_path=None and give vae_arch/unet_arch to start from random weights")
STAGE_HINTS = {"pretrained_vae": "train it with `train_vae.py --config configs/train_vae_cfg.py` (its output_dir) "
                                 "or point pretrained_vae at a diffusers `vae/` folder",
               "pretrained_unet": "train it with `train_diff.py --config configs/train_diff_step1_cfg.py` (its "
                                  "output_dir) or point pretrained_unet at a diffusers `unet/` folder"}


def validate_config(cfg, stage, mixed) -> None:
    """Raise ConfigError for the first thing in ``cfg`` that cannot work for ``stage`` (a VAEStage/CDMStage);
    ``mixed``: the resolved mixed precision (textssr.runtime.precision.MixedPrecision)."""
    require_keys(cfg, REQUIRED, where=f"{stage.name} training config")
    _check_numbers(cfg)
    _check_choices(cfg, mixed)
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
    if cfg.get("use_8bit_adam") and cfg.get("adam_fused"):
        raise ConfigError("use_8bit_adam=True with adam_fused=True: bitsandbytes' AdamW8bit has no fused kernel "
                          "(it takes no `fused`); set one of them to False")
    if cfg.get("use_8bit_adam") and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("use_8bit_adam=True needs bitsandbytes: `pip install bitsandbytes` (CUDA only), "
                          "or set use_8bit_adam=False")
    _check_combinations(cfg, stage)


def _check_numbers(cfg) -> None:
    check_output_dir(cfg.output_dir)
    check_seed(cfg.seed)
    for key in ("resolution", "ttf_size", "max_len", "train_batch_size", "gradient_accumulation_steps",
                "checkpointing_steps"):
        as_int(cfg[key], key, minimum=1)
    for key in ("dataloader_num_workers", "lr_warmup_steps", "image_log_steps"):
        as_int(cfg.get(key, 0), key, minimum=0)
    for key in ("logging_steps", "image_log_count"):
        as_int(cfg.get(key, 1), key, minimum=1)
    if cfg.get("max_train_steps") is None and not cfg.get("num_train_epochs"):
        raise ConfigError("set max_train_steps or num_train_epochs (both are empty)")
    as_int(cfg.get("max_train_steps"), "max_train_steps", minimum=1, allow_none=True)
    as_int(cfg.get("num_train_epochs"), "num_train_epochs", minimum=1, allow_none=True)
    as_float(cfg.learning_rate, "learning_rate", minimum=0, exclusive=True)
    for key in ("adam_beta1", "adam_beta2", "adam_weight_decay", "adam_epsilon"):
        as_float(cfg.get(key, 0.0), key, minimum=0)
    as_float(cfg.get("max_grad_norm"), "max_grad_norm", minimum=0, allow_none=True)
    as_float(cfg.get("snr_gamma"), "snr_gamma", minimum=0, exclusive=True, allow_none=True)
    as_float(cfg.get("text_loss_weight"), "text_loss_weight", minimum=0, exclusive=True, allow_none=True)
    if (cfg.get("timestep_bias_strategy") or "none") != "none":
        _check_timestep_bias(cfg)
    as_int(cfg.get("checkpoints_total_limit"), "checkpoints_total_limit", minimum=1, allow_none=True)
    distributed.check_timeout(cfg.get("ddp_timeout"))


def _check_combinations(cfg, stage) -> None:
    """Options that are fine alone but crash together once the models are built."""
    if cfg.lr_scheduler == "piecewise_constant":
        raise ConfigError("lr_scheduler=\"piecewise_constant\" needs step rules, which these configs cannot give; "
                          "choose another schedule (constant, constant_with_warmup, cosine, linear, ...)")
    resume = ckpt.resolve_resume(cfg.get("resume_from_checkpoint"), str(cfg.output_dir))
    if resume and cfg.get("use_ema") and not os.path.isdir(os.path.join(resume, f"{stage.subfolder}_ema")):
        raise ConfigError(f"use_ema=True but {resume} was written without EMA ({stage.subfolder}_ema/ is missing): "
                          "resume with use_ema=False, or from a checkpoint that has it, or start a new output_dir")
    if cfg.get("use_8bit_adam") and not torch.cuda.is_available():
        raise ConfigError("use_8bit_adam=True needs a GPU (bitsandbytes' 8-bit optimizer states live on CUDA) and "
                          "this machine has none; set use_8bit_adam=False")


def _check_timestep_bias(cfg) -> None:
    strategy = check_choice(cfg.timestep_bias_strategy, "timestep_bias_strategy", TIMESTEP_BIAS_STRATEGIES)
    if float(cfg.get("timestep_bias_multiplier") or 0) <= 0:
        raise ConfigError(f"timestep_bias_multiplier={cfg.get('timestep_bias_multiplier')}; must be > 0 "
                          "(> 1 favours the biased timesteps, < 1 avoids them)")
    if strategy in ("later", "earlier") and not 0 < float(cfg.get("timestep_bias_portion") or 0) <= 1:
        raise ConfigError(f"timestep_bias_portion={cfg.get('timestep_bias_portion')}; must be in (0, 1]")
    if strategy == "range" and not 0 <= int(cfg.timestep_bias_begin) < int(cfg.timestep_bias_end):
        raise ConfigError(f"timestep_bias_begin={cfg.timestep_bias_begin}, timestep_bias_end={cfg.timestep_bias_end}; "
                          "need 0 <= begin < end")


def _check_choices(cfg, mixed) -> None:
    check_choice(cfg.lr_scheduler, "lr_scheduler", [s.value for s in SchedulerType])
    check_precision(mixed.name, "mixed_precision", on_cpu=not torch.cuda.is_available(), source=mixed.source)
    check_choice(cfg.get("prediction_type"), "prediction_type", PREDICTION_TYPES,
                 "(None = the scheduler's own, v_prediction for SD 2.1)")
    if cfg.get("image_log_scheduler") is not None:
        check_choice(cfg.image_log_scheduler, "image_log_scheduler", sorted(SCHEDULERS))
    check_choice(cfg.get("image_log_timestep_spacing"), "image_log_timestep_spacing", TIMESTEP_SPACINGS)
    check_choice(cfg.get("vae_dtype"), "vae_dtype", VAE_DTYPES,
                 "(None: as mixed_precision; \"fp32\": float32 whatever mixed_precision says; \"auto\": bf16 where "
                 "timed faster on this machine)")
    check_choice(cfg.get("vae_latents", "sample"), "vae_latents", VAE_LATENTS)
    check_latent_cache(cfg)
    factor = cfg.get("scaling_factor")
    if factor is not None and factor != "auto" and (isinstance(factor, (str, bool)) or float(factor) <= 0):
        raise ConfigError(f"scaling_factor={factor!r}; must be None (keep the VAE's), \"auto\" or a number > 0")
    check_choice(cfg.get("conv_in_init", "sd"), "conv_in_init", CONV_IN_INITS)
    check_choice(cfg.get("report_to"), "report_to", REPORTERS)
    resume = cfg.get("resume_from_checkpoint")
    if resume and resume != "latest":
        ckpt.resolve_resume(resume, str(cfg.output_dir))


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
        if not cfg.get(arch_key):
            raise ConfigError(f"{key}=None and pretrained_model_name_or_path=None: set {arch_key} (an architecture "
                              f"dict) to build a random {subfolder}, or point {key} at a model folder")
        return
    from_sd = not cfg.get(key)
    hint = SD21_HINT if from_sd else STAGE_HINTS[key]
    require_path(source, "pretrained_model_name_or_path" if from_sd else key, hint)
    with config_errors(FileNotFoundError, ValueError, OSError, prefix=f"{key}: ", suffix=f" — {hint}"):
        resolve_model_dir(source, subfolder)
