"""Reduced precision by measurement, never by assumption.

bfloat16 is 3x faster than float32 for a convolution on a CPU with AVX512-BF16 or AMX, and 30x *slower* on one
without them (emulated). So wherever a config says ``"auto"`` for a precision on the CPU, bfloat16 is chosen only
when torch reports native bf16 support *and* timing the real workload in both dtypes shows it faster (by at least
``MIN_GAIN``); without native support it is not even timed (that alone would cost seconds per call). On a GPU,
``"auto"`` mixed precision means bf16 where the GPU supports it, else fp16. Every choice is returned with the
reason and the timings, so callers can log it.

Explicit values (``"no"``, ``"bf16"``, ``"fp16"``) are never second-guessed. ``None`` means accelerate's
setting, as in the original's configs (:func:`resolve_mixed_precision`).

The GPU switches every stage shares live here too: :func:`gpu_native_bf16` (the hardware's own bf16 arithmetic,
on the rank's own device) and :func:`configure_backends` (TF32 through torch's current API, cuDNN autotuning).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from textssr.config import ConfigError

AUTO = "auto"
PRECISIONS = ("no", "fp16", "bf16")  # mixed_precision names, as accelerate spells them
SETTING_VALUES = (None,) + PRECISIONS + (AUTO,)  # what a mixed_precision key may say (None: accelerate's setting)
ACCELERATE_ENV = "ACCELERATE_MIXED_PRECISION"  # what `accelerate launch` passes its ranks (flag or config file)
BF16_CAPABILITY = (8, 0)  # bf16 tensor-core arithmetic from Ampere on; V100 / T4 only emulate it (slowly)
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
        native_bf16 = gpu_native_bf16(device) if device.type == "cuda" else cpu_native_bf16()
    if not native_bf16:
        where = "this GPU" if device.type == "cuda" else "this CPU (torch reports neither AVX512-BF16 nor AMX)"
        return Choice("no", f"no native bfloat16 on {where}: not timed")
    fp32, bf16 = timer([run_fp32, run_bf16], device)
    timings = {"float32": round(fp32, 1), "bfloat16": round(bf16, 1)}
    if bf16 * MIN_GAIN <= fp32:
        return Choice("bf16", f"{fp32 / bf16:.2f}x faster than float32", timings)
    return Choice("no", f"bfloat16 not >= {MIN_GAIN}x faster", timings)


def gpu_native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` (the rank's own: never the current default, which is GPU 0 before accelerate
    has set each rank's) does bfloat16 arithmetic in hardware. ``torch.cuda.is_bf16_supported()`` also says yes
    where bf16 is only emulated (V100, T4), much slower than fp16 there."""
    return tuple(torch.cuda.get_device_capability(device)) >= BF16_CAPABILITY


def gpu_mixed_precision(device: torch.device) -> Choice:
    """``"auto"`` mixed precision on the CUDA ``device``: bf16 where the hardware has it (no loss scaling), else
    fp16."""
    name = torch.cuda.get_device_name(device)
    if gpu_native_bf16(device):
        return Choice("bf16", f"{name} has native bfloat16")
    return Choice("fp16", f"{name} has no native bfloat16 (compute capability < {BF16_CAPABILITY[0]}.0)")


@dataclass(frozen=True)
class MixedPrecision:
    """A run's mixed-precision setting: ``name`` (one of PRECISIONS or "auto") and where it came from."""
    name: str
    source: str

    def describe(self, key: str = "mixed_precision") -> str:
        return f"{key}: {self.name} (from {self.source})"


def resolve_mixed_precision(value, key: str = "mixed_precision") -> MixedPrecision:
    """The mixed precision in effect. ``None`` (the original's configs) = what accelerate's ``Accelerator`` itself
    does: ``ACCELERATE_MIXED_PRECISION`` (set by ``accelerate launch`` from its ``--mixed_precision`` flag or the
    config file it read), else "no" — under plain ``python`` accelerate's default config file is not read, by
    accelerate nor here. An explicit config value wins over a launch setting that differs (warned, naming both;
    accelerate's default "no" is no setting)."""
    launched = os.environ.get(ACCELERATE_ENV)
    launched = launched.lower() if launched else None
    if value is None:
        if launched:
            return MixedPrecision(launched, f"accelerate launch: {ACCELERATE_ENV}={launched}")
        return MixedPrecision("no", f"accelerate's default: {ACCELERATE_ENV} is not set (no `accelerate launch`)")
    if launched not in (None, "no") and launched != value:
        warnings.warn(f"{key}={value!r} in the config overrides accelerate's {launched!r} ({ACCELERATE_ENV}, from "
                      f"`accelerate launch --mixed_precision` or its config file); set {key}=None to follow "
                      "accelerate", stacklevel=2)
    return MixedPrecision(value, "the config")


def check_precision(value, key: str, on_cpu: bool, allow_auto: bool = True, source: Optional[str] = None) -> str:
    """Validate a mixed-precision value; a ConfigError line names the key, the choices and (``source``) where a
    value that the config did not give came from."""
    choices = PRECISIONS + ((AUTO,) if allow_auto else ())
    origin = f" (from {source})" if source and source != "the config" else ""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}{origin}; choose one of {choices}")
    if on_cpu and value == "fp16":
        raise ConfigError(f"{key}=fp16{origin} needs a GPU; on the CPU use \"no\", \"bf16\" (fast only with "
                          "AVX512-BF16/AMX) or \"auto\" (bf16 where measured faster)")
    return value


def check_gpu_bf16(device: torch.device, **values) -> None:
    """Refuse bf16 for any of ``values`` (key=value) on a GPU without native bf16 (emulated: slower than fp32)."""
    if device.type != "cuda" or gpu_native_bf16(device):
        return
    for key, value in values.items():
        if value == "bf16":
            raise ConfigError(f"{key}=bf16 on {torch.cuda.get_device_name(device)}, which has no native bfloat16 "
                              f"(compute capability < {BF16_CAPABILITY[0]}.0): use \"fp16\" or \"auto\"")


def configure_backends(device: torch.device, allow_tf32: bool, fixed_shapes: bool = True) -> None:
    """GPU switches: TF32 matmuls and convolutions where ``allow_tf32`` (torch's ``fp32_precision`` API; False
    leaves torch's defaults), and cuDNN autotuning for work whose shapes never change (``fixed_shapes``)."""
    if allow_tf32:
        # set_float32_matmul_precision sets the legacy flag and the per-backend one together: after only
        # ``torch.backends.cuda.matmul.fp32_precision = "tf32"`` the legacy reads (get_float32_matmul_precision,
        # matmul.allow_tf32, which torch's compiler makes) raise "mix of the legacy and new APIs"
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    if device.type == "cuda" and fixed_shapes:
        torch.backends.cudnn.benchmark = True
