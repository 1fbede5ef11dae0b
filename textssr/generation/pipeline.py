"""Loading the pipeline once: TextSSRPipeline on the run's device and dtype, the sampler, the TTF encoder checked
against the run's sizes, and mixed_precision="auto" settled by measurement."""
from __future__ import annotations

import copy
import dataclasses
from typing import Tuple

import torch
from diffusers_textssr import TextSSRPipeline

from textssr.runtime import precision
from textssr.config import ConfigError
from textssr.generation.run import Run
from textssr.models import cast_model, load_scheduler, load_unet, load_vae
from textssr.runtime.precision import check_gpu_bf16, configure_backends, dtype_name, gpu_mixed_precision

def load_pipeline(run: Run, cfg, device: torch.device) -> Tuple[TextSSRPipeline, Run]:
    """TextSSRPipeline on ``device`` in ``run.dtype``, with the sampler ``cfg.scheduler`` and its
    ``timestep_spacing``; ttf_size / max_len are checked against the UNet's TTF encoder and the resolution against
    the VAE. Returns the pipeline and the run, whose mixed_precision="auto" is settled now (:func:`settle_precision`:
    a new Run, the given one is left as it was)."""
    check_gpu_bf16(device, mixed_precision=run.mixed.name if run.mixed else None)
    configure_backends(device, cfg.allow_tf32)
    vae, unet = load_vae(run.vae_dir).to(device).eval(), load_unet(run.unet_dir).to(device).eval()
    scheduler = load_scheduler(run.scheduler_dir, cfg.scheduler, timestep_spacing=cfg.timestep_spacing)
    pipe = TextSSRPipeline(vae=vae, unet=unet, scheduler=scheduler)
    check_text_encoder(run, pipe.unet)
    if run.resolution % pipe.vae_scale_factor:
        raise ConfigError(f"resolution={run.resolution} is not a multiple of the VAE's downsampling factor "
                          f"{pipe.vae_scale_factor}")
    if run.dtype is None:
        choice = settle_precision(pipe, run, device, cfg.batch_size)
        run = dataclasses.replace(run, dtype=choice.dtype, precision=choice.as_record("mixed_precision"))
    elif run.mixed is not None:
        print(f"{run.mixed.describe()}: {dtype_name(run.dtype)}")
    if run.dtype != torch.float32:
        cast_model(pipe.vae, run.dtype)  # as diffusers asks (a plain .to(dtype) warns on every run)
        cast_model(pipe.unet, run.dtype)
    return pipe, run


def settle_precision(pipe, run: Run, device: torch.device, batch_size: int):
    """mixed_precision="auto": bf16 (else fp16) on a GPU; on the CPU bf16 only where one sampling step of a batch
    (encode, UNet, decode) is measurably faster than in float32 (textssr.runtime.precision). Prints and returns the
    choice."""
    if device.type == "cuda":
        choice = gpu_mixed_precision(device)
    else:
        fast = TextSSRPipeline(vae=cast_model(copy.deepcopy(pipe.vae), torch.bfloat16),
                               unet=cast_model(copy.deepcopy(pipe.unet), torch.bfloat16), scheduler=pipe.scheduler)
        inputs = probe_inputs(pipe, run.resolution, min(batch_size, 4))

        def sampler(p):
            return lambda: p(*inputs, num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                             output_type="latent", show_progress=False)

        choice = precision.choose(device, sampler(pipe), sampler(fast))
    print(choice.describe("mixed_precision") + (f" (from {run.mixed.source})" if run.mixed else ""))
    return choice


def probe_inputs(pipe, resolution: int, batch: int):
    """Zero conditions of the right shapes for timing one pipeline call (ttf stack as the UNet's encoder wants)."""
    side = int(pipe.unet.config.ttf_img_size)
    ttf = torch.ones(batch, int(pipe.unet.config.ttf_in_chans), side, side)
    image = torch.zeros(batch, 3, resolution, resolution)
    return ttf, image + 1.0, image, torch.ones(batch, 1, resolution, resolution)


def check_text_encoder(run: Run, unet) -> None:
    """ttf_size and max_len are fixed by the UNet's TTF encoder (read from its folder by :func:`resolve_run`):
    refuse a mismatch with the loaded one."""
    img, chans = int(unet.config.ttf_img_size), int(unet.config.ttf_in_chans)
    if (img, chans) != (run.ttf_size, run.max_len):
        raise ConfigError(f"ttf_size={run.ttf_size}, max_len={run.max_len} do not match the UNet's TTF encoder "
                          f"(image {img}, {chans} channels); set --cfg-options ttf_size={img} max_len={chans}")
