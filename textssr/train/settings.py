"""The settings of the training stages: every key of configs/train_vae_cfg.py (:class:`TrainSettings`, the VAE
stage) and of configs/train_diff_step1_cfg.py (:class:`CDMSettings`, both CDM steps), checked and cast once at start-up
(textssr.config.settings). Checks across keys, files and models: textssr.train.validate."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

from diffusers.optimization import SchedulerType
from diffusers_textssr import CONV_IN_INITS

from textssr.config.settings import (Boolean, Choice, Integer, Mapping, Number, OneOf, Settings, Text, Texts,
                                     setting)
from textssr.data.anyword import PLACEMENTS
from textssr.models import SCHEDULERS, TIMESTEP_SPACINGS
from textssr.runtime.precision import SETTING_VALUES as MIXED_PRECISIONS

from textssr.train.stages import TIMESTEP_BIAS_STRATEGIES
VAE_DTYPES = (None, "fp32", "bf16", "auto")
PREDICTION_TYPES = (None, "epsilon", "v_prediction", "sample")
VAE_LATENTS = ("sample", "mode")
REPORTERS = (None, "none", "tensorboard")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """configs/train_vae_cfg.py: data, models, checkpoints, optimisation, logging (documented there)."""
    SCHEMA = "train_vae_cfg.py"
    # data
    lmdb_path: Union[str, List[str]] = setting(Texts())
    font_path: str = setting(Text())
    language: Optional[str] = setting(Text(optional=True, what="a language name such as 'Latin' or 'Chinese'"))
    resolution: int = setting(Integer(1))
    ttf_size: int = setting(Integer(1))
    max_len: int = setting(Integer(1))
    region_placement: str = setting(Choice(*PLACEMENTS))
    strict: bool = setting(Boolean())
    dataloader_num_workers: int = setting(Integer(0))
    dataloader_worker_nice: int = setting(Integer(0))
    # models
    pretrained_model_name_or_path: Optional[str] = setting(Text(optional=True, what="a folder"))
    pretrained_vae: Optional[str] = setting(Text(optional=True, what="a folder"))
    vae_arch: Optional[dict] = setting(Mapping(what="a dict of AutoencoderKL keyword arguments"))
    scaling_factor: Union[None, str, float] = setting(OneOf(Choice(None, "auto"), Number(0, exclusive=True),
                                                            what='None (keep the VAE\'s), "auto" or a number > 0'))
    # output and checkpoints
    output_dir: str = setting(Text(what="a folder path"))
    logging_dir: str = setting(Text(what="a folder path"))
    checkpointing_steps: int = setting(Integer(1))
    checkpoints_total_limit: Optional[int] = setting(Integer(1, optional=True))
    resume_from_checkpoint: Optional[str] = setting(Text(optional=True, what='"latest" or a checkpoint folder'))
    # optimisation
    seed: int = setting(Integer(0))
    train_batch_size: int = setting(Integer(1))
    gradient_accumulation_steps: int = setting(Integer(1))
    num_train_epochs: Optional[int] = setting(Integer(1, optional=True))
    max_train_steps: Optional[int] = setting(Integer(1, optional=True))
    learning_rate: float = setting(Number(0, exclusive=True))
    scale_lr: bool = setting(Boolean())
    lr_scheduler: str = setting(Choice(*[s.value for s in SchedulerType]))
    lr_warmup_steps: int = setting(Integer(0))
    adam_beta1: float = setting(Number(0, 1, below=True))
    adam_beta2: float = setting(Number(0, 1, below=True))
    adam_weight_decay: float = setting(Number(0))
    adam_epsilon: float = setting(Number(0))
    use_8bit_adam: bool = setting(Boolean())
    adam_fused: bool = setting(Boolean())
    max_grad_norm: Optional[float] = setting(Number(0, optional=True))
    use_ema: bool = setting(Boolean())
    ema_decay: float = setting(Number(0, 1))
    mixed_precision: Optional[str] = setting(Choice(*MIXED_PRECISIONS, hint="(None: accelerate's setting)"))
    allow_tf32: bool = setting(Boolean())
    ddp_timeout: float = setting(Number(0, exclusive=True))
    gradient_checkpointing: bool = setting(Boolean())
    find_unused_parameters: bool = setting(Boolean())
    profile: bool = setting(Boolean())
    # logging
    report_to: Optional[str] = setting(Choice(*REPORTERS))
    tracker_project_name: str = setting(Text())
    logging_steps: int = setting(Integer(1))
    image_log_steps: int = setting(Integer(0))
    image_log_count: int = setting(Integer(1))


@dataclass(frozen=True)
class CDMSettings(TrainSettings):
    """configs/train_diff_step1_cfg.py (both CDM steps): the VAE stage's keys and the CDM-only ones."""
    SCHEMA = "train_diff_step1_cfg.py"
    pretrained_unet: Optional[str] = setting(Text(optional=True, what="a folder"))
    unet_arch: Optional[dict] = setting(Mapping(what="a dict of TextSSRUNet2DConditionModel keyword arguments"))
    conv_in_init: str = setting(Choice(*CONV_IN_INITS))
    scheduler_path: Optional[str] = setting(Text(optional=True, what="a folder"))
    prediction_type: Optional[str] = setting(Choice(*PREDICTION_TYPES,
                                                    hint="(None = the scheduler's own, v_prediction for SD 2.1)"))
    snr_gamma: Optional[float] = setting(Number(0, exclusive=True, optional=True))
    text_loss_weight: Optional[float] = setting(Number(0, exclusive=True, optional=True))
    timestep_bias_strategy: str = setting(Choice(*TIMESTEP_BIAS_STRATEGIES))
    timestep_bias_multiplier: float = setting(Number(0, exclusive=True))
    timestep_bias_portion: float = setting(Number(0, 1, exclusive=True))
    timestep_bias_begin: int = setting(Integer(0))
    timestep_bias_end: int = setting(Integer(1))
    vae_latents: str = setting(Choice(*VAE_LATENTS))
    latent_cache: bool = setting(Boolean())
    vae_dtype: Optional[str] = setting(Choice(*VAE_DTYPES, hint="(None: as mixed_precision; \"fp32\": float32 "
                                              "whatever mixed_precision says; \"auto\": bf16 where timed faster on "
                                              "this machine)"))
    image_log_inference_steps: int = setting(Integer(1))
    image_log_scheduler: str = setting(Choice(*sorted(SCHEDULERS)))
    image_log_timestep_spacing: Optional[str] = setting(Choice(*TIMESTEP_SPACINGS))


STAGE_SETTINGS = {"vae": TrainSettings, "cdm": CDMSettings}
