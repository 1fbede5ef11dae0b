"""The precisions of a training run: the mixed-precision setting in effect (accelerate's or the config's), and the
"auto" choices settled on the first real batch — on the CPU :func:`probe_mixed_precision` times a forward + backward
of it in float32 and under bfloat16 autocast, :func:`probe_vae_dtype` the frozen VAE's encoding of it in its dtype
and in bfloat16 (textssr.runtime.precision)."""
from __future__ import annotations

import copy
from typing import Callable, Tuple

import torch

from textssr.models import cast_model
from textssr.runtime import precision
from textssr.runtime.profiling import autocast


def probe_mixed_precision(loss: Callable, model, batch: dict, generator: torch.Generator,
                          device: torch.device) -> precision.Choice:
    """``mixed_precision="auto"`` on the CPU: the choice from timing ``loss(model, batch, generator)`` + its
    backward (no update) in float32 against under bfloat16 autocast; the gradients are dropped and the generator's
    stream restored after each run, so training starts as if nothing had run."""
    def run_step(bf16: bool) -> None:
        state = generator.get_state()
        with autocast(device, bf16):
            value = loss(model, batch, generator)
        value.backward()
        model.zero_grad(set_to_none=True)
        generator.set_state(state)

    return precision.choose(device, lambda: run_step(False), lambda: run_step(True))


def probe_vae_dtype(vae, pixels: torch.Tensor, device: torch.device,
                    agree: Callable = lambda choice: choice) -> Tuple[object, precision.Choice]:
    """``vae_dtype="auto"``: the VAE (``vae`` or a bfloat16 copy) that encodes ``pixels`` (a real batch) faster,
    and the choice; ``agree`` makes every rank take rank 0's."""
    candidate = cast_model(copy.deepcopy(vae), torch.bfloat16)

    def encoder(model):
        def run():
            with torch.no_grad():
                model.encode(pixels.to(model.dtype)).latent_dist.mode()
        return run

    choice = agree(precision.choose(device, encoder(vae), encoder(candidate)))
    return (candidate if choice.name == "bf16" else vae), choice


class TrainPrecision:
    """The precisions of a training run, from the resolved ``mixed`` (textssr.runtime.precision.MixedPrecision): its name
    goes to accelerate (:attr:`accelerate_name`). ``"auto"``: on a GPU bf16 where ``device`` (the rank's own, once
    accelerate has set it) has native bf16, else fp16; on the CPU float32 until :meth:`settle` has timed the first
    batch both ways, then bf16 autocast (:attr:`use_autocast`) where measurably faster. ``records``: the setting in
    effect and how each "auto" was settled."""

    def __init__(self, mixed: "precision.MixedPrecision", device: torch.device):
        self.auto = mixed.name == precision.AUTO
        self.gpu_choice = precision.gpu_mixed_precision(device) if self.auto and device.type == "cuda" else None
        self.accelerate_name = self.gpu_choice.name if self.gpu_choice else "no" if self.auto else mixed.name
        in_effect = f"{self.gpu_choice.name} (auto: {self.gpu_choice.reason})" if self.gpu_choice else (
            "auto: settled on the first batch" if self.auto else self.accelerate_name)
        self.in_effect = f"mixed precision {in_effect} (from {mixed.source})"
        self.records = {"mixed_precision": dict(setting=mixed.name, source=mixed.source, in_effect=in_effect,
                                                dtype=precision.dtype_name(precision.DTYPES[self.accelerate_name]))}
        self.use_autocast = False

    def settle(self, stage, model, batch: dict, generator: torch.Generator, device: torch.device, agree: Callable,
               log: Callable) -> None:
        """The choices that need a real batch: vae_dtype="auto" (``stage.first_batch``) and mixed_precision="auto"
        (CPU); ``agree`` makes every rank take rank 0's; each record is logged."""
        record = stage.first_batch(batch, device, agree)
        if record is not None:
            self.records[record["key"]] = record
        if self.auto and self.gpu_choice is None:
            choice = agree(probe_mixed_precision(stage.loss, model, batch, generator, device))
            self.use_autocast = choice.name == "bf16"
            self.records["mixed_precision"] = dict(self.records["mixed_precision"],
                                                   **choice.as_record("mixed_precision", message=True))
        for key, record in self.records.items():
            if "message" in record:
                record = dict(record)
                log(f"[{stage.name}] {record.pop('message')}", event="precision", **record)
