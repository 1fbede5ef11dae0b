"""Where a training step's time goes: :class:`StepProfiler` (``profile=True``) splits every optimizer step into data
wait, VAE encode, forward, backward, optimizer and logging (host syncs, tqdm, TensorBoard, checkpoints);
``benchmarks/bench_train.py --profile`` prints it. :func:`autocast`: bfloat16 autocast or nothing.
"""
from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from typing import Dict

import torch

PHASES = ("data", "vae_encode", "forward", "backward", "optimizer", "logging", "checkpoint")
WARMUP_STEPS = 2  # first optimizer steps left out of the profile (allocator and kernel warm-up)


class StepProfiler:
    """Accumulates named phases of each optimizer step; disabled, every call is a no-op. On CUDA each lap waits
    for the device first (what makes the phases measurable; it costs a little)."""

    def __init__(self, enabled: bool, device: torch.device, warmup: int = WARMUP_STEPS):
        self.enabled, self.sync, self.warmup = bool(enabled), device.type == "cuda", warmup
        self.totals: Counter = Counter()
        self.current: Counter = Counter()
        self.steps = 0
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the previous lap to ``name``."""
        if not self.enabled:
            return
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.current[name] += now - self.t
        self.t = now

    def end_step(self) -> None:
        """Close an optimizer step (what remains since the last lap is logging)."""
        if not self.enabled:
            return
        self.lap("logging")
        self.steps += 1
        if self.steps > self.warmup:
            self.totals.update(self.current)
        self.current.clear()

    def report(self) -> Dict[str, float]:
        """Milliseconds per optimizer step for each phase, and their sum as ``step``; {} when nothing counted."""
        counted = self.steps - self.warmup
        if not self.enabled or counted < 1:
            return {}
        out = {name: round(1000.0 * self.totals[name] / counted, 2) for name in PHASES}
        out.update({k: round(1000.0 * v / counted, 2) for k, v in self.totals.items() if k not in out})
        out["step"] = round(sum(v for k, v in out.items()), 2)
        out["steps_counted"] = counted
        return out


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device`` when ``enabled``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


