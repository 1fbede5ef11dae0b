"""What differs between the three training stages: the model trained, its loss, its sample grid, its files.

``VAEStage`` fine-tunes the SD 2.1 ``AutoencoderKL`` on text-region crops (SPEC §4: MSE on ``vae(x).sample``,
posterior mode, no KL term). ``CDMStage`` trains the 13-channel TextSSR UNet with the VAE frozen (CDM step 1
and step 2 differ only in their config: data and initial UNet). The loop in ``loop.py`` calls

    stage.build(cfg)                      → the trainable model (before ``accelerator.prepare``)
    stage.setup(accelerator, dtype)       → move frozen parts to the device
    stage.loss(model, batch, generator)   → scalar loss (float32)
    stage.images(model, batch, generator) → (N, 3, H, W) grid rows in [0, 1] for TensorBoard
    stage.save_extra(folder)              → stage files beside the model in a checkpoint
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F


def model_source(cfg, key: str, subfolder: str) -> Optional[str]:
    """Where a model comes from: ``cfg[key]`` if set, else ``<pretrained_model_name_or_path>/<subfolder>``,
    else None (= build from the architecture dict)."""
    if cfg.get(key):
        return str(cfg[key])
    if cfg.get("pretrained_model_name_or_path"):
        return os.path.join(str(cfg.pretrained_model_name_or_path), subfolder)
    return None


def _vae(cfg, key: str = "pretrained_vae"):
    from textssr.models import load_vae
    return load_vae(model_source(cfg, key, "vae"), vae_arch=cfg.get("vae_arch"))


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] image → [0, 1]."""
    return (x.float() / 2 + 0.5).clamp(0, 1)


class VAEStage:
    """Stage 1 of SPEC §5: fine-tune the VAE on ``image`` crops."""

    name = "vae"
    subfolder = "vae"
    vae_mode = True  # the dataset returns only ``image``

    def build(self, cfg):
        return _vae(cfg)

    def setup(self, accelerator, weight_dtype: torch.dtype) -> None:
        pass

    def loss(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        image = batch["image"]  # (B, 3, R, R) in [-1, 1]
        reconstruction = model(image).sample  # posterior mode (sample_posterior=False)
        return F.mse_loss(reconstruction.float(), image.float())

    @torch.no_grad()
    def images(self, model, batch: dict, generator: torch.Generator, cfg) -> torch.Tensor:
        """Rows: input crops, then their reconstructions."""
        image = batch["image"][: cfg.image_log_count]
        reconstruction = model(image).sample
        return torch.cat([_to_unit(image), _to_unit(reconstruction)])

    def save_extra(self, folder: str) -> None:
        pass


class CDMStage:
    """CDM steps 1 and 2 of SPEC §5: the 13-channel UNet on [noisy latent, masked_image latent, glyph latent,
    mask], with the TTF stack as ``encoder_hidden_states``; the VAE is frozen."""

    name = "cdm"
    subfolder = "unet"
    vae_mode = False

    def __init__(self):
        self.vae = None
        self.noise_scheduler = None

    def build(self, cfg):
        from textssr.models import load_scheduler, load_unet
        self.cfg = cfg
        self.vae = _vae(cfg).requires_grad_(False).eval()
        self.noise_scheduler = load_scheduler(model_source(cfg, "scheduler_path", "scheduler"), name="ddpm",
                                              prediction_type=cfg.prediction_type)
        return load_unet(model_source(cfg, "pretrained_unet", "unet"), unet_arch=cfg.get("unet_arch"),
                         conv_in_init=cfg.conv_in_init)

    def setup(self, accelerator, weight_dtype: torch.dtype) -> None:
        self.vae.to(accelerator.device)
        if weight_dtype != torch.float32:
            self.vae.to(dtype=weight_dtype)
        self.weight_dtype = weight_dtype

    def encode(self, batch: dict, generator: torch.Generator):
        """Latents of image, masked_image and glyph in ONE VAE call (sampled, × scaling_factor, SPEC §4) and the
        mask nearest-resized to latent size. The glyph goes in as [0, 1] on purpose (SPEC §3.7)."""
        pixels = torch.cat([batch["image"], batch["masked_image"], batch["glyph"]]).to(self.weight_dtype)
        with torch.no_grad():
            z = self.vae.encode(pixels).latent_dist.sample(generator) * self.vae.config.scaling_factor
        latents, masked_latents, glyph_latents = z.float().chunk(3)
        mask = F.interpolate(batch["mask"].float(), size=latents.shape[-2:], mode="nearest")
        return latents, masked_latents, glyph_latents, mask

    def loss(self, model, batch: dict, generator: torch.Generator) -> torch.Tensor:
        latents, masked_latents, glyph_latents, mask = self.encode(batch, generator)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator, device=latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:  # validated at start-up; a scheduler folder could still carry "sample"
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        sample = torch.cat([noisy, masked_latents, glyph_latents, mask], dim=1)  # (B, 13, h, w)
        pred = model(sample, timesteps, encoder_hidden_states=batch["ttf_img"]).sample
        if not self.cfg.snr_gamma:
            return F.mse_loss(pred.float(), target.float())
        return self._min_snr_loss(pred.float(), target.float(), timesteps, prediction_type)

    def _min_snr_loss(self, pred, target, timesteps, prediction_type: str) -> torch.Tensor:
        """Min-SNR-γ weighting (Hang et al. 2023): per-sample MSE × min(SNR, γ) / SNR (ε) or / (SNR + 1) (v)."""
        from diffusers.training_utils import compute_snr
        snr = compute_snr(self.noise_scheduler, timesteps)
        weight = torch.clamp(snr, max=self.cfg.snr_gamma)
        weight = weight / (snr + 1) if prediction_type == "v_prediction" else weight / snr
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        return (per_sample * weight).mean()

    @torch.no_grad()
    def images(self, model, batch: dict, generator: torch.Generator, cfg) -> torch.Tensor:
        """Rows: masked_image, glyph, a pipeline sample (``image_log_inference_steps`` DDPM steps), the real crop."""
        from diffusers import DDPMScheduler
        from diffusers_textssr import TextSSRPipeline
        n = cfg.image_log_count
        pipe = TextSSRPipeline(vae=self.vae, unet=model,
                               scheduler=DDPMScheduler.from_config(self.noise_scheduler.config))
        out = pipe(batch["ttf_img"][:n], batch["glyph"][:n], batch["masked_image"][:n], batch["mask"][:n],
                   num_inference_steps=cfg.image_log_inference_steps, generator=generator, output_type="pt",
                   show_progress=False)
        samples = out.images.float().to(batch["image"].device)
        return torch.cat([_to_unit(batch["masked_image"][:n]), batch["glyph"][:n].float(), samples,
                          _to_unit(batch["image"][:n])])

    def save_extra(self, folder: str) -> None:
        self.noise_scheduler.save_pretrained(os.path.join(folder, "scheduler"))


STAGES = {"vae": VAEStage, "cdm": CDMStage}
