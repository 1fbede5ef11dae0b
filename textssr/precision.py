"""Reduced precision by measurement, never by assumption.

bfloat16 is 3x faster than float32 for a convolution on a CPU with AVX512-BF16 or AMX, and 30x *slower* on one
without them (emulated). So wherever a config says ``"auto"`` for a precision on the CPU, bfloat16 is chosen only
when torch reports native bf16 support *and* timing the real workload in both dtypes shows it faster (by at least
``MIN_GAIN``); without native support it is not even timed (that alone would cost seconds per call). On a GPU,
``"auto"`` mixed precision means bf16 where the GPU supports it, else fp16. Every choice is returned with the
reason and the timings, so callers can log it.

Explicit values (``"no"``, ``"bf16"``, ``"fp16"``) are never second-guessed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from textssr.config import ConfigError

AUTO = "auto"
PRECISIONS = ("no", "fp16", "bf16")  # mixed_precision names, as accelerate spells them
DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_GAIN = 1.1  # bf16 must be at least this much faster to be worth its rounding
TIMED_RUNS = 3  # per candidate, alternated, after one warm-up run each; the fastest counts


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def cpu_native_bf16() -> bool:
    """Whether torch reports native bfloat16 arithmetic on this CPU (AVX512-BF16 or AMX tiles)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


@dataclass
class Choice:
    """A resolved precision: ``name`` (``"no"``/``"bf16"``/``"fp16"``), why, and the timings (ms) behind it."""
    name: str
    reason: str
    timings_ms: Dict[str, float] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def describe(self, what: str) -> str:
        timed = ", ".join(f"{k} {v:.0f} ms" for k, v in self.timings_ms.items())
        return f"{what}=auto → {dtype_name(self.dtype)} ({self.reason}{'; ' + timed if timed else ''})"

    def as_record(self, key: Optional[str] = None, message: bool = False) -> dict:
        """The choice as data; ``key`` names the option chosen for, ``message`` adds :meth:`describe`'s line."""
        record = dict(choice=self.name, dtype=dtype_name(self.dtype), reason=self.reason, timings_ms=self.timings_ms)
        if key is not None:
            record["key"] = key
        if message:
            record["message"] = self.describe(key)
        return record


def time_calls(fns: Sequence[Callable[[], object]], device: torch.device, runs: int = TIMED_RUNS) -> List[float]:
    """Milliseconds of the fastest of ``runs`` calls of each of ``fns``, after one warm-up call each. The calls
    alternate (a, b, a, b, ...), so a machine that speeds up or slows down meanwhile favours neither."""
    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for fn in fns:
        timed(fn)
    best = [float("inf")] * len(fns)
    for _ in range(runs):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], timed(fn))
    return [b * 1000.0 for b in best]


def choose(device: torch.device, run_fp32: Callable[[], object], run_bf16: Callable[[], object],
           native_bf16: Optional[bool] = None, timer: Callable = time_calls) -> Choice:
    """``"bf16"`` when it is measurably faster for this workload on ``device``, else ``"no"`` (float32).

    ``run_fp32`` / ``run_bf16`` run one real unit of work (an encode, a forward + backward) in each dtype.
    ``native_bf16`` (default: :func:`cpu_native_bf16` on a CPU, the GPU's own report on CUDA) skips the timing
    when the hardware has no bf16 arithmetic. ``timer`` is injectable for tests.
    """
    if native_bf16 is None:
        native_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_native_bf16()
    if not native_bf16:
        where = "this GPU" if device.type == "cuda" else "this CPU (torch reports neither AVX512-BF16 nor AMX)"
        return Choice("no", f"no native bfloat16 on {where}: not timed")
    fp32, bf16 = timer([run_fp32, run_bf16], device)
    timings = {"float32": round(fp32, 1), "bfloat16": round(bf16, 1)}
    if bf16 * MIN_GAIN <= fp32:
        return Choice("bf16", f"{fp32 / bf16:.2f}x faster than float32", timings)
    return Choice("no", f"bfloat16 not >= {MIN_GAIN}x faster", timings)


def gpu_mixed_precision() -> Choice:
    """``"auto"`` mixed precision on a CUDA device: bf16 where supported (no loss scaling), else fp16."""
    if torch.cuda.is_bf16_supported():
        return Choice("bf16", "the GPU supports bfloat16")
    return Choice("fp16", "the GPU lacks bfloat16")


def check_precision(value, key: str, on_cpu: bool, allow_auto: bool = True) -> str:
    """Validate a mixed-precision config value; a ConfigError line names the key and the choices."""
    choices = PRECISIONS + ((AUTO,) if allow_auto else ())
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {choices}")
    if on_cpu and value == "fp16":
        raise ConfigError(f"{key}=fp16 needs a GPU; on the CPU use \"no\", \"bf16\" (fast only with AVX512-BF16/AMX) "
                          "or \"auto\" (bf16 where measured faster)")
    return value
