"""TextSSRPipeline: repaint the text area of square regions from a VAE, a TextSSR UNet and a scheduler (method.md §6)."""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import List, Optional, Union

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .unet import TextSSRUNet2DConditionModel

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
Generators = Union[torch.Generator, List[torch.Generator], None]


@dataclass
class TextSSRPipelineOutput(BaseOutput):
    """``images``: a list of PIL images, (B, R, R, 3) float numpy in [0, 1], (B, 3, R, R) torch in [0, 1], or the
    final latents (B, latent_channels, R / f, R / f) for ``output_type="latent"``."""

    images: Union[List[PIL.Image.Image], np.ndarray, torch.Tensor]


class TextSSRPipeline(DiffusionPipeline):
    """The conditional denoising loop of TextSSR: no prompt, no classifier-free guidance.

    Per step the UNet sees ``[scaled noisy latent, masked_image latent, glyph latent, mask]`` (13 channels) and
    the TTF stack as ``encoder_hidden_states``. Conditions are encoded once, with the VAE posterior's mode
    (deterministic; method.md §6 allows it), in one batched VAE call.
    """

    model_cpu_offload_seq = "unet->vae"

    def __init__(self, vae: AutoencoderKL, unet: TextSSRUNet2DConditionModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @torch.no_grad()
    def __call__(self, ttf_images: torch.Tensor, glyph_images: torch.Tensor, masked_images: torch.Tensor,
                 masks: torch.Tensor, num_inference_steps: int = 20, generator: Generators = None,
                 latents: Optional[torch.Tensor] = None, output_type: str = "pil", return_dict: bool = True,
                 show_progress: bool = True):
        """Generate B regions. Inputs are batched exactly as ``textssr.data.collate`` stacks them:

        ttf_images     (B, max_len, ttf_size, ttf_size) in [0, 1]
        glyph_images   (B, 3, R, R) in [0, 1] — fed to the VAE in this range on purpose (method.md §3.7)
        masked_images  (B, 3, R, R) in [-1, 1]
        masks          (B, 1, R, R), 0 = text area to generate, 1 = context

        ``latents``: (B, latent_channels, R / f, R / f) start noise (multiplied by the scheduler's
        ``init_noise_sigma``); when absent it is drawn from ``generator`` (one, or one per sample). The
        per-step noise of stochastic schedulers (DDPM) is drawn from ``generator``; when only ``latents`` are
        given, from one generator per sample seeded from that sample's latents — so a sample's result depends on
        its own inputs and latents alone, never on the global RNG or on the batch it is in.
        Inputs are moved to the UNet's device and cast to the UNet's (and the VAE's) dtype.
        """
        batch, resolution = self._check_inputs(ttf_images, glyph_images, masked_images, masks, output_type)
        device, unet_dtype, vae_dtype = self._execution_device, self.unet.dtype, self.vae.dtype
        scaling = self.vae.config.scaling_factor

        pixels = torch.cat([masked_images, glyph_images]).to(device, vae_dtype)
        conditions = self.vae.encode(pixels).latent_dist.mode() * scaling
        masked_latents, glyph_latents = conditions.to(unet_dtype).chunk(2)
        mask = F.interpolate(masks.to(device, unet_dtype), size=conditions.shape[-2:], mode="nearest")
        ttf_context = self.unet.encode_ttf(ttf_images.to(device, unet_dtype))  # once: it is the same every step

        shape = (batch, self.vae.config.latent_channels) + tuple(conditions.shape[-2:])
        step_generator = generator
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=unet_dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape} for {resolution}-pixel regions; "
                                 f"got {tuple(latents.shape)}")
            if generator is None:
                step_generator = generators_from_latents(latents)
            latents = latents.to(device, unet_dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents * self.scheduler.init_noise_sigma
        step_kwargs = {"generator": step_generator} if _accepts(self.scheduler.step, "generator") else {}
        timesteps = self.scheduler.timesteps
        for t in (self.progress_bar(timesteps) if show_progress else timesteps):
            model_input = torch.cat([self.scheduler.scale_model_input(latents, t), masked_latents, glyph_latents,
                                     mask], dim=1)
            prediction = self.unet(model_input, t, ttf_context=ttf_context).sample
            latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample

        if output_type == "latent":
            images = latents
        else:
            decoded = self._decode(latents / scaling)
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return TextSSRPipelineOutput(images=images) if return_dict else (images,)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode; a float16 VAE whose config says ``force_upcast`` (SD 2.1's: its decoder overflows float16)
        decodes in float32, as diffusers' Stable Diffusion pipelines do."""
        vae = self.vae
        if vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            decoder_dtype = torch.float32
            vae.to(dtype=decoder_dtype)
            try:
                return vae.decode(latents.to(decoder_dtype)).sample
            finally:
                vae.to(dtype=torch.float16)
        return vae.decode(latents.to(vae.dtype)).sample

    def _check_inputs(self, ttf_images, glyph_images, masked_images, masks, output_type: str):
        """(B, R) of a valid call; a one-line ValueError naming the bad argument otherwise."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}; choose one of {OUTPUT_TYPES}")
        batch, resolution = masked_images.shape[0], masked_images.shape[-1]
        expected = {"glyph_images": (batch, 3, resolution, resolution),
                    "masked_images": (batch, 3, resolution, resolution),
                    "masks": (batch, 1, resolution, resolution)}
        given = {"glyph_images": glyph_images, "masked_images": masked_images, "masks": masks}
        for name, tensor in given.items():
            if tuple(tensor.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]} (B, C, R, R); got {tuple(tensor.shape)}")
        if ttf_images.ndim != 4 or ttf_images.shape[0] != batch:
            raise ValueError(f"ttf_images must have shape ({batch}, max_len, ttf_size, ttf_size); "
                             f"got {tuple(ttf_images.shape)}")
        if resolution % self.vae_scale_factor:
            raise ValueError(f"region size {resolution} is not a multiple of the VAE's downsampling factor "
                             f"{self.vae_scale_factor}")
        return batch, resolution


def generators_from_latents(latents: torch.Tensor) -> List[torch.Generator]:
    """One CPU generator per sample, seeded from a hash of that sample's latents."""
    data = latents.detach().to("cpu", torch.float32).contiguous().numpy()
    seeds = [int.from_bytes(hashlib.sha256(x.tobytes()).digest()[:8], "little") >> 1 for x in data]
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters
