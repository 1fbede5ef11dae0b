"""Reduced precision by measurement (textssr.runtime.precision): bf16 only where the hardware has it and timing says it is
faster; the CDM stage's vae_dtype="auto", training's mixed_precision="auto" and infer's, each with the capability
and the timings faked both ways."""
import pytest
import torch

from textssr.runtime import precision
from textssr.config import ConfigError
from textssr.runtime.precision import choose

CPU = torch.device("cpu")


def fake_timer(ms):
    """A timer returning the given milliseconds for its functions and recording that it ran each of them."""
    calls = []

    def timer(fns, device):
        for fn in fns:
            fn()
            calls.append(fn)
        return list(ms)

    return timer, calls


def test_no_native_bf16_is_never_timed():
    timer, calls = fake_timer([1.0, 1.0])
    choice = choose(CPU, lambda: None, lambda: None, native_bf16=False, timer=timer)
    assert choice.name == "no" and choice.dtype == torch.float32
    assert calls == [] and choice.timings_ms == {}
    assert "not timed" in choice.reason


@pytest.mark.parametrize("fp32_ms, bf16_ms, expected", [(300.0, 100.0, "bf16"), (100.0, 300.0, "no"),
                                                        (105.0, 100.0, "no"), (111.0, 100.0, "bf16")])
def test_bf16_only_when_measurably_faster(fp32_ms, bf16_ms, expected):
    ran = []
    timer, calls = fake_timer([fp32_ms, bf16_ms])
    choice = choose(CPU, lambda: ran.append("fp32"), lambda: ran.append("bf16"), native_bf16=True, timer=timer)
    assert choice.name == expected
    assert ran == ["fp32", "bf16"]  # each candidate really ran, float32 first
    assert choice.timings_ms == {"float32": fp32_ms, "bfloat16": bf16_ms}
    assert "auto → " + ("bfloat16" if expected == "bf16" else "float32") in choice.describe("vae_dtype")


def test_capability_comes_from_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert precision.cpu_native_bf16() is False
    timer, calls = fake_timer([1.0, 1.0])
    assert choose(CPU, lambda: None, lambda: None, timer=timer).name == "no" and calls == []
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_native_bf16() is True


def test_real_timer_alternates_and_measures():
    order = []
    fast, slow = precision.time_calls([lambda: order.append("a"), lambda: (order.append("b"), sum(range(10 ** 5)))],
                                      CPU, runs=2)
    assert order == ["a", "b"] * 3  # one warm-up each, then alternated
    assert 0.0 < fast < slow


def test_check_precision():
    assert precision.check_precision("auto", "mixed_precision", on_cpu=True) == "auto"
    assert precision.check_precision("bf16", "mixed_precision", on_cpu=True) == "bf16"
    with pytest.raises(ConfigError, match="mixed_precision=fp16 needs a GPU"):
        precision.check_precision("fp16", "mixed_precision", on_cpu=True)
    with pytest.raises(ConfigError, match=r"mixed_precision='fp8'; choose one of"):
        precision.check_precision("fp8", "mixed_precision", on_cpu=False)
