"""infer.py's settings: the sampling ones (textssr.generation.settings) and the bench's (configs/infer_cfg.py)."""
from __future__ import annotations

from dataclasses import dataclass

from textssr.config.settings import Choice, Integer, Text, setting
from textssr.generation.settings import SamplingSettings

DEVICES = ("auto", "cpu")


@dataclass(frozen=True)
class InferSettings(SamplingSettings):
    """configs/infer_cfg.py. An item does not depend on the batch it is denoised in, so ``batch_size`` may change
    on resume."""
    SCHEMA = "infer_cfg.py"
    batch_size: int = setting(Integer(1), resume=False)
    bench: str = setting(Text(what="an AnyWord JSON or a folder holding test.json"))
    device: str = setting(Choice(*DEVICES, hint="(under accelerate, pick GPUs with CUDA_VISIBLE_DEVICES)"),
                          resume=False)
