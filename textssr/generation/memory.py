"""Will a denoising batch fit? A model of its memory (weights + activations growing with resolution²) checked
against what the device has free, before any model loads."""
from __future__ import annotations

import os
from typing import Optional

import torch

from textssr.config import ConfigError
from textssr.generation.run import Run, model_config

# Activation memory of one sample, in elements per output pixel per channel of the VAE decoder's widest full-size
# stage: tensors alive at once in its last up block (input, GroupNorm, SiLU, conv, upsampled skip, residual). The
# tiny models' peak RSS over their loaded weights (one CPU thread, fp32, one sampling step) measured 7-11 such elements
# at R = 128-512 (112 MiB at R=256, 292 at R=512, 60 more per extra sample at R=256); rounded up. The UNet, at 1/64 of
# the pixels, and attention (SDPA: memory linear in tokens) stay within that.
ACTIVATION_FACTOR = 12
MEMORY_MARGIN = 0.8  # use at most this share of the memory the device has free


def estimate_memory(run: Run, batch_size: int) -> int:
    """Bytes a denoising batch of ``batch_size`` at ``run.resolution`` needs: the weights (their files' size,
    halved in fp16/bf16) plus batch × ACTIVATION_FACTOR × R² × the channels of the VAE decoder's widest full-size
    stage × bytes per element. A constant-factor model of activations growing with R²; see ACTIVATION_FACTOR."""
    half = run.dtype in (torch.float16, torch.bfloat16)
    weights = sum(os.path.getsize(os.path.join(folder, name)) for folder in (run.vae_dir, run.unet_dir)
                  for name in os.listdir(folder) if name.startswith("diffusion_pytorch_model"))
    channels = [int(c) for c in model_config(run.vae_dir).get("block_out_channels", (128, 256))]
    widest = max(channels[:2])  # the last up block (channels[0]) and the upsampled input it gets (channels[1])
    element = 2 if half else 4
    return (weights // 2 if half else weights) + batch_size * ACTIVATION_FACTOR * run.resolution ** 2 * widest * element


def available_memory(device: torch.device) -> Optional[int]:
    """Free bytes on ``device``: the GPU's (torch.cuda.mem_get_info); on the CPU the RAM the kernel can give
    (MemAvailable), within a cgroup's limit; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = None
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:  # a container's memory limit (cgroup v2)
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limit = f.read().strip()
            if limit != "max":
                left = int(limit) - int(g.read())
                free = left if free is None else min(free, left)
    except (OSError, ValueError):
        pass
    return free


def check_memory(run: Run, batch_size: int, device: torch.device, key: str = "batch_size") -> int:
    """Refuse, before any model loads, a batch that cannot fit: :func:`estimate_memory` against MEMORY_MARGIN of
    :func:`available_memory`. ``key``: the config key (or flag) that sets the batch. Returns the estimate."""
    need, free = estimate_memory(run, batch_size), available_memory(device)
    if free is not None and need > MEMORY_MARGIN * free:
        fits = int((MEMORY_MARGIN * free - estimate_memory(run, 0)) // max(1, estimate_memory(run, 1)
                                                                          - estimate_memory(run, 0)))
        hint = f"{key}={fits}" if fits >= 1 else "a smaller resolution"
        raise ConfigError(f"resolution={run.resolution} with {key}={batch_size} needs about {need / 2**30:.1f} GiB "
                          f"but {device.type} has {free / 2**30:.1f} GiB free; use {hint} (estimate: weights + "
                          f"activations growing with resolution²)")
    return need
