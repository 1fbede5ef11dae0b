"""Denoising batches and turning the results into uint8 crops."""
from __future__ import annotations

from typing import Callable, List, Tuple

import numpy as np
import torch

from textssr.generation.run import Run


def denoise(pipe, run: Run, samples: List[dict], generators: List[torch.Generator], steps: int,
            device: torch.device) -> np.ndarray:
    """Denoise one batch; ``generators`` (one CPU generator per sample) draw its initial latents, then the
    sampler's per-step noise. Returns the generated regions, uint8 (B, R, R, 3)."""
    factor = pipe.vae_scale_factor
    shape = (pipe.vae.config.latent_channels, run.resolution // factor, run.resolution // factor)
    latents = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, run.dtype)
    generators = step_generators(generators, device)

    def stack(key):
        return torch.stack([s[key] for s in samples]).to(device, run.dtype)

    with torch.no_grad():
        out = pipe(stack("ttf_img"), stack("glyph"), stack("masked_image"), stack("mask"),
                   num_inference_steps=steps, generator=generators, latents=latents, output_type="np",
                   show_progress=False)
    return to_uint8(np.asarray(out.images))


def step_generators(generators: List[torch.Generator], device: torch.device,
                    factory: Callable[[torch.device], torch.Generator] = torch.Generator) -> List[torch.Generator]:
    """The generators a stochastic sampler (DDPM) draws each step's noise from. On the CPU the items' own CPU
    generators, which drew the initial latents (so the CPU's crops are what they always were). On a GPU one
    generator per item *on the device*, seeded from its CPU generator: diffusers draws the noise of CPU generators
    on the CPU and copies it to the GPU from unpageable memory — one synchronising copy per step in the thread that
    launches the kernels."""
    if device.type == "cpu":
        return generators
    seeds = [int(torch.randint(0, 2**63 - 1, (1,), generator=g)) for g in generators]
    return [factory(device).manual_seed(seed) for seed in seeds]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1], (..., 3) → uint8, rounded."""
    return np.clip(np.round(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def real_region(sample: dict) -> np.ndarray:
    """The real R×R crop of ``sample`` (``image`` in [-1, 1]) as uint8 (R, R, 3)."""
    return to_uint8((sample["image"].permute(1, 2, 0).float().numpy() + 1.0) / 2.0)


def crop_box(image: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Cut (H, W, C) to ``box`` = (x0, y0, x1, y1), exclusive ends."""
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]
