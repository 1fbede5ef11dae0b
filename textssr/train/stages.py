"""What differs between the three training stages: the model trained, its loss, its sample grid, its files.

``VAEStage`` fine-tunes the SD 2.1 ``AutoencoderKL`` on text-region crops (method.md §4: MSE on ``vae(x).sample``,
posterior mode, no KL term). ``CDMStage`` trains the 13-channel TextSSR UNet with the VAE frozen (CDM step 1
and step 2 differ only in their config: data and initial UNet). The loop in ``loop.py`` calls

    stage.build(cfg)                      → the trainable model (before ``accelerator.prepare``)
    stage.setup(accelerator, dtype)       → move frozen parts to the device
    stage.first_batch(batch, device, agree) → settle what needs a real batch (vae_dtype="auto"), once
    stage.observe(batch)                  → see each training batch (the VAE keeps crops for scaling_factor)
    stage.loss(model, batch, generator)   → scalar loss (float32); calls stage.lap() after its phases
    stage.images(model, batch, generator) → (N, 3, H, W) grid rows in [0, 1] for TensorBoard
    stage.save_extra(folder)              → stage files beside the model in a checkpoint
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr
from diffusers_textssr import TextSSRPipeline

from textssr.config.checks import config_errors
from textssr.utils.jsonio import read_json, write_json
from textssr.train.latent_cache import LatentCache
from textssr.models import cast_model, load_scheduler, load_unet, load_vae, scheduler_class
from textssr.train.precision import probe_vae_dtype

TIMESTEP_BIAS_STRATEGIES = ("none", "later", "earlier", "range")
VAE_DTYPE_OF = {"bf16": torch.bfloat16, "fp32": torch.float32}  # vae_dtype values that fix the frozen VAE's dtype


def model_source(cfg, key: str, subfolder: str) -> Optional[str]:
    """Where a model comes from: ``getattr(cfg, key)`` if set, else ``<pretrained_model_name_or_path>/<subfolder>``,
    else None (= build from the architecture dict)."""
    if getattr(cfg, key):
        return str(getattr(cfg, key))
    if cfg.pretrained_model_name_or_path:
        return os.path.join(str(cfg.pretrained_model_name_or_path), subfolder)
    return None


def _vae(cfg):
    return load_vae(model_source(cfg, "pretrained_vae", "vae"), vae_arch=cfg.vae_arch)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] image → [0, 1]."""
    return (x.float() / 2 + 0.5).clamp(0, 1)


def timestep_weights(num_timesteps: int, strategy: str, multiplier: float, portion: float = 0.25,
                     begin: int = 0, end: int = 1000) -> torch.Tensor:
    """Relative sampling weight of each training timestep, shape (num_timesteps,): 1 everywhere, ``multiplier``
    on the favoured ones — the last ``portion`` of the range ("later", the noisiest, which few-step samplers start
    from), the first ``portion`` ("earlier"), or [``begin``, ``end``) ("range"); "none" = uniform."""
    weights = torch.ones(num_timesteps, dtype=torch.float64)
    favoured = max(1, round(num_timesteps * portion))
    if strategy == "later":
        weights[num_timesteps - favoured:] = multiplier
    elif strategy == "earlier":
        weights[:favoured] = multiplier
    elif strategy == "range":
        if max(0, begin) >= min(num_timesteps, end):
            raise ValueError(f"timestep_bias_begin={begin}, timestep_bias_end={end} select none of the "
                             f"{num_timesteps} training timesteps (0-{num_timesteps - 1})")
        weights[max(0, begin):min(num_timesteps, end)] = multiplier
    elif strategy != "none":
        raise ValueError(f"timestep_bias_strategy={strategy!r}; choose one of {TIMESTEP_BIAS_STRATEGIES}")
    return weights / weights.sum()


class Stage:
    """Hooks every stage has; ``lap(name)`` is set by the loop's step profiler (a no-op otherwise)."""

    @staticmethod
    def lap(name: str) -> None:
        pass

    def setup(self, accelerator, weight_dtype: torch.dtype) -> None:
        pass

    def first_batch(self, batch: dict, device: torch.device, agree=lambda choice: choice) -> Optional[dict]:
        """Settle choices that need a real batch (vae_dtype="auto"); returns a record to log, or None. ``agree``
        makes every rank take rank 0's choice."""
        return None

    def observe(self, batch: dict) -> None:
        """Called once per training batch (not for the extra passes of the precision probe)."""

    def first_batch_checks(self) -> List[Tuple[bool, str]]:
        """(found on this rank, the message) for each check of the first batch's inputs to the trained model (e.g.
        non-finite frozen-VAE latents). The message must read the same on every rank: the loop reduces the flags
        over ranks and every rank stops with the first flagged check's message."""
        return []


class VAEStage(Stage):
    """Stage 1 of method.md §5: fine-tune the VAE on ``image`` crops."""

    name = "vae"
    subfolder = "vae"
    vae_mode = True  # the dataset returns only ``image``
    scaling_crops = 64  # crops whose latents set scaling_factor="auto"

    def __init__(self):
        self.model, self.cfg, self.scaling_images = None, None, []

    def build(self, cfg):
        self.cfg, self.model = cfg, _vae(cfg)
        return self.model  # accelerate wraps this module; it keeps the trained weights

    def observe(self, batch: dict) -> None:
        if self.cfg.scaling_factor == "auto":
            self._keep_for_scaling(batch["image"])

    def _keep_for_scaling(self, image: torch.Tensor) -> None:
        """The first ``scaling_crops`` training crops this rank sees: a fixed set, so "auto" is reproducible."""
        kept = sum(len(x) for x in self.scaling_images)
        if kept < self.scaling_crops:
            self.scaling_images.append(image[: self.scaling_crops - kept].detach().clone())

    def loss(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        image = batch["image"]  # (B, 3, R, R) in [-1, 1]
        reconstruction = model(image).sample  # posterior mode (sample_posterior=False)
        self.lap("forward")
        return F.mse_loss(reconstruction.float(), image.float())

    @torch.no_grad()
    def images(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Rows: input crops, then their reconstructions."""
        image = batch["image"][: self.cfg.image_log_count]
        return torch.cat([_to_unit(image), _to_unit(model(image).sample)])

    def scaling_factor(self) -> Optional[float]:
        """The scaling_factor to save: the configured number, 1 / std of the kept crops' posterior-mode latents
        ("auto"), or None (keep the VAE's own)."""
        factor = self.cfg.scaling_factor
        if factor is None:
            return None
        if factor != "auto":
            return float(factor)
        if not self.scaling_images:  # resumed right at the end: measure on nothing new
            return None
        with torch.no_grad():
            dtype = next(self.model.parameters()).dtype
            latents = self.model.encode(torch.cat(self.scaling_images).to(dtype)).latent_dist.mode().float()
        return float(1.0 / latents.std().clamp_min(1e-6))

    def save_extra(self, folder: str) -> None:
        """Write the scaling_factor option into ``<checkpoint>/vae/config.json`` (nothing before the first one)."""
        config_path = os.path.join(folder, self.subfolder, "config.json")
        factor = self.scaling_factor() if os.path.isfile(config_path) else None
        if factor is not None:
            write_json(dict(read_json(config_path), scaling_factor=factor), config_path, indent=2, sort_keys=True)


class CDMStage(Stage):
    """CDM steps 1 and 2 of method.md §5: the 13-channel UNet on [noisy latent, masked_image latent, glyph latent,
    mask], with the TTF stack as ``encoder_hidden_states``; the VAE is frozen."""

    name = "cdm"
    subfolder = "unet"
    vae_mode = False

    def __init__(self):
        self.vae = None
        self.noise_scheduler = None
        self.timestep_probs = None  # None: uniform timesteps
        self.latent_cache = None  # a LatentCache with latent_cache=True
        self.latents_checked = False  # the first batch's latents are checked for overflow
        self.latents_finite = True  # what that check found (first_batch_checks)

    def build(self, cfg):
        self.cfg = cfg
        self.noise_scheduler = load_scheduler(model_source(cfg, "scheduler_path", "scheduler"), name="ddpm",
                                              prediction_type=cfg.prediction_type)
        strategy = cfg.timestep_bias_strategy or "none"
        with config_errors(ValueError):  # the range check needs the scheduler's length: before any model is built
            self.timestep_probs = None if strategy == "none" else timestep_weights(
                self.noise_scheduler.config.num_train_timesteps, strategy, cfg.timestep_bias_multiplier,
                cfg.timestep_bias_portion, cfg.timestep_bias_begin, cfg.timestep_bias_end)
        self.vae = _vae(cfg).requires_grad_(False).eval()
        self.latent_cache = LatentCache() if cfg.latent_cache else None
        return load_unet(model_source(cfg, "pretrained_unet", "unet"), unet_arch=cfg.unet_arch,
                         conv_in_init=cfg.conv_in_init)

    def setup(self, accelerator, weight_dtype: torch.dtype) -> None:
        # the frozen VAE in the mixed-precision dtype (as the original), or in its own: bfloat16 / float32
        # (vae_dtype="bf16" / "fp32"); "auto" starts in the mixed-precision dtype and is settled on the first batch
        vae_dtype = VAE_DTYPE_OF.get(self.cfg.vae_dtype, weight_dtype)
        cast_model(self.vae, vae_dtype, accelerator.device)
        if self.latent_cache is not None:
            self.latent_cache.pin = accelerator.device.type == "cuda"

    def first_batch(self, batch: dict, device: torch.device, agree=lambda choice: choice) -> Optional[dict]:
        """vae_dtype="auto": keep the VAE in the dtype (its own or bfloat16) that encodes this real batch faster
        (textssr.runtime.profiling); returns the choice's record (None when there was nothing to choose)."""
        if self.cfg.vae_dtype != "auto" or self.vae.dtype == torch.bfloat16:
            return None
        self.vae, choice = probe_vae_dtype(self.vae, self._pixels(batch), device, agree)
        return choice.as_record("vae_dtype", message=True)

    @staticmethod
    def _pixels(batch: dict) -> torch.Tensor:
        return torch.cat([batch["image"], batch["masked_image"], batch["glyph"]])

    def encode(self, batch: dict, generator: torch.Generator):
        """Latents of image, masked_image and glyph in ONE VAE call (sampled as method.md §4, or the posterior mean with
        vae_latents="mode"; × scaling_factor) and the mask nearest-resized to latent size. The glyph goes in as
        [0, 1] on purpose (method.md §3.7)."""
        if self.latent_cache is not None:  # textssr.train.latent_cache
            latents, masked_latents, glyph_latents = self.latent_cache.latents(batch, lambda x: self._encode(x, None))
        else:
            latents, masked_latents, glyph_latents = self._encode(self._pixels(batch), generator).chunk(3)
        mask = F.interpolate(batch["mask"].float(), size=latents.shape[-2:], mode="nearest")
        if not self.latents_checked:
            self._check_finite(latents, masked_latents, glyph_latents)
        return latents, masked_latents, glyph_latents, mask

    def _check_finite(self, *latents: torch.Tensor) -> None:
        """A VAE whose activations overflow its dtype (a fine-tuned VAE in float16) gives inf/NaN latents, and the
        UNet would train on them silently: the first batch's are checked, and the loop stops every rank with the
        fix (first_batch_checks)."""
        self.latents_finite = bool(all(torch.isfinite(z).all() for z in latents))
        self.latents_checked = True

    def first_batch_checks(self) -> List[Tuple[bool, str]]:
        dtype = str(self.vae.dtype).replace("torch.", "")
        return [(not self.latents_finite,
                 f"the frozen VAE's latents of the first batch are not finite in {dtype} (vae_dtype="
                 f"{self.cfg.vae_dtype!r}): its activations overflow {dtype}; set vae_dtype=\"fp32\" (or \"bf16\", "
                 "whose range is float32's)")]

    def _encode(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pixels = pixels.to(self.vae.dtype)
        # the VAE runs in its own dtype (vae_dtype), not under the trained model's autocast
        with torch.no_grad(), torch.autocast(pixels.device.type, enabled=False):
            posterior = self.vae.encode(pixels).latent_dist
            z = posterior.mode() if self.cfg.vae_latents == "mode" else posterior.sample(generator)
        return (z * self.vae.config.scaling_factor).float()

    def loss(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        latents, masked_latents, glyph_latents, mask = self.encode(batch, generator)
        self.lap("vae_encode")
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        timesteps = self.sample_timesteps(latents.shape[0], generator, latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        elif prediction_type == "sample":  # x0-prediction: the clean latents themselves
            target = latents
        else:  # validated at start-up; a scheduler folder could still carry another
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        sample = torch.cat([noisy, masked_latents, glyph_latents, mask], dim=1)  # (B, 13, h, w)
        pred = model(sample, timesteps, encoder_hidden_states=batch["ttf_img"]).sample
        self.lap("forward")
        text_weight = float(self.cfg.text_loss_weight or 1.0)
        if not self.cfg.snr_gamma and text_weight == 1.0:
            return F.mse_loss(pred.float(), target.float())  # the original's loss
        squared = F.mse_loss(pred.float(), target.float(), reduction="none")
        if text_weight != 1.0:  # mask 0 = text area
            squared = squared * (1.0 + (text_weight - 1.0) * (1.0 - mask))
        per_sample = squared.mean(dim=(1, 2, 3))
        if self.cfg.snr_gamma:
            per_sample = per_sample * self._min_snr_weight(timesteps, prediction_type)
        return per_sample.mean()

    def sample_timesteps(self, n: int, generator: torch.Generator, device) -> torch.Tensor:
        """``n`` training timesteps: uniform over the scheduler's range (the original), or drawn with the
        ``timestep_bias_*`` weights."""
        if self.timestep_probs is None:
            steps = self.noise_scheduler.config.num_train_timesteps
            return torch.randint(0, steps, (n,), generator=generator, device=device)
        return torch.multinomial(self.timestep_probs.to(device), n, replacement=True, generator=generator)

    def _min_snr_weight(self, timesteps, prediction_type: str) -> torch.Tensor:
        """Min-SNR-γ weighting (Hang et al. 2023) of each sample's MSE: min(SNR, γ) / SNR (ε), / (SNR + 1) (v),
        or min(SNR, γ) (x0, whose MSE is the ε MSE / SNR)."""
        snr = compute_snr(self.noise_scheduler, timesteps)
        weight = torch.clamp(snr, max=self.cfg.snr_gamma)
        if prediction_type == "v_prediction":
            return weight / (snr + 1)
        if prediction_type == "epsilon":
            return weight / snr
        return weight

    @torch.no_grad()
    def images(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Rows: masked_image, glyph, a pipeline sample (``image_log_inference_steps`` steps of the
        ``image_log_scheduler`` sampler), the real crop."""
        cfg, n = self.cfg, self.cfg.image_log_count
        config = dict(self.noise_scheduler.config)
        if cfg.image_log_timestep_spacing:
            config["timestep_spacing"] = cfg.image_log_timestep_spacing
        scheduler = scheduler_class(cfg.image_log_scheduler or "ddpm").from_config(config)
        pipe = TextSSRPipeline(vae=self.vae, unet=model, scheduler=scheduler)
        out = pipe(batch["ttf_img"][:n], batch["glyph"][:n], batch["masked_image"][:n], batch["mask"][:n],
                   num_inference_steps=cfg.image_log_inference_steps, generator=generator, output_type="pt",
                   show_progress=False)
        samples = out.images.float().to(batch["image"].device)
        return torch.cat([_to_unit(batch["masked_image"][:n]), batch["glyph"][:n].float(), samples,
                          _to_unit(batch["image"][:n])])

    def save_extra(self, folder: str) -> None:
        self.noise_scheduler.save_pretrained(os.path.join(folder, "scheduler"))


STAGES = {"vae": VAEStage, "cdm": CDMStage}
