"""Checkpoint plumbing for the training loop: save hooks, atomic save, pruning, ``latest``, resume.

A checkpoint is a folder ``<output_dir>/checkpoint-<step>/`` holding

    <model>/                 the trained model in diffusers format (``vae/`` or ``unet/``, safetensors)
    <model>_ema/             its EMA weights, same format (only with ``use_ema``)
    scheduler/               the noise scheduler used for training (CDM stages)
    optimizer.bin, scheduler.bin, random_states_<rank>.pkl, ...   the accelerate state
    generator_<rank>.pt      the state of each rank's explicit training generator (noise, timesteps)
    settings.json            the resolved settings of the run, as data (what infer reads)
    trainer_state.json       step, epoch and skip counts — written last

It is written under a temporary name (``.tmp-checkpoint-<step>``) and renamed when complete, so a run killed
mid-save leaves nothing that ``latest`` would pick: resume only ever sees complete checkpoints.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from typing import Callable, Dict, List, Optional, Tuple

import torch
from diffusers.utils.constants import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import save_file

from textssr.config import ConfigError
from textssr.utils.jsonio import read_json, write_json
from textssr.models.loading import MODEL_CONFIG, find_checkpoints

PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-" + PREFIX
STATE_FILE = "trainer_state.json"


def list_checkpoints(output_dir: str) -> List[Tuple[int, str]]:
    """The checkpoints under ``output_dir`` a run can resume from (they hold trainer_state.json), oldest first."""
    return find_checkpoints(output_dir, STATE_FILE)


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """Path of the newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_resume(resume_from_checkpoint: Optional[str], output_dir: str) -> Optional[str]:
    """The checkpoint to resume from: None (fresh run), ``"latest"`` (newest in output_dir, None if there is none)
    or a path (a checkpoint folder, or a name relative to output_dir)."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        return latest_checkpoint(output_dir)
    for path in (resume_from_checkpoint, os.path.join(output_dir, resume_from_checkpoint)):
        if os.path.isfile(os.path.join(path, STATE_FILE)):
            return path
    raise ConfigError(f"resume_from_checkpoint: no complete checkpoint at {resume_from_checkpoint} (a folder "
                      f"holding {STATE_FILE}); use \"latest\" or None to start fresh")


def remove_partial(output_dir: str) -> None:
    """Delete temporary folders left by a save that was killed (main process only)."""
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def prune(output_dir: str, total_limit: Optional[int]) -> List[str]:
    """Keep the newest ``total_limit`` checkpoints (None keeps all); return the removed paths."""
    found = list_checkpoints(output_dir)
    if not total_limit or len(found) <= total_limit:
        return []
    removed = [path for _, path in found[: len(found) - total_limit]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def register_model_hooks(accelerator, subfolder: str, ema=None) -> None:
    """Make ``accelerator.save_state``/``load_state`` write and read the trained model as a diffusers folder
    ``<checkpoint>/<subfolder>/`` (and the EMA as ``<subfolder>_ema/``) instead of accelerate's flat files."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                model = accelerator.unwrap_model(model)
                model.save_pretrained(os.path.join(output_dir, subfolder), safe_serialization=True)
                if ema is not None:
                    save_ema(ema, model, os.path.join(output_dir, f"{subfolder}_ema"))
        weights.clear()  # accelerate saves nothing else for the models

    def load_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            read_into(os.path.join(input_dir, subfolder), model.state_dict())
            if ema is not None:
                ema_dir = os.path.join(input_dir, f"{subfolder}_ema")
                if not os.path.isdir(ema_dir):
                    raise ConfigError(f"use_ema=True but {ema_dir} is missing: the checkpoint was written without "
                                      "EMA; resume with use_ema=False or from a checkpoint that has it")
                load_ema(ema, model, ema_dir)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


# diffusers' EMAModel.state_dict() entries other than the weights; EMAModel.save_pretrained stores them in config.json
EMA_COUNTERS = ("decay", "min_decay", "optimization_step", "update_after_step", "use_ema_warmup", "inv_gamma", "power")


def save_ema(ema, model, folder: str) -> None:
    """Write ``ema`` (diffusers' EMAModel of ``model``'s parameters) as a diffusers model folder: the shadow weights
    under the model's parameter names (its buffers beside them) and the model's config with the EMA counters — the
    folder EMAModel.save_pretrained writes, without building a randomly initialised model to copy them into."""
    named = [name for name, _ in model.named_parameters()]
    if len(named) != len(ema.shadow_params):
        raise ValueError(f"the EMA holds {len(ema.shadow_params)} tensors, the model {len(named)} parameters")
    state = model.state_dict()
    state.update(zip(named, ema.shadow_params))
    os.makedirs(folder, exist_ok=True)
    save_file(state, os.path.join(folder, SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    config = json.loads(model.to_json_string())
    counters = {k: v for k, v in ema.state_dict().items() if k in EMA_COUNTERS}
    write_json(dict(config, **counters), os.path.join(folder, MODEL_CONFIG), indent=2, sort_keys=True)


def load_ema(ema, model, folder: str) -> None:
    """Restore ``ema`` in place from a folder written by :func:`save_ema` or by diffusers' EMAModel.save_pretrained
    (the same layout): its counters from config.json, its shadow weights read into the tensors it holds."""
    config = read_json(os.path.join(folder, MODEL_CONFIG))
    ema.load_state_dict({k: config[k] for k in EMA_COUNTERS if k in config})  # no shadow_params: kept, not copied
    named = [name for name, _ in model.named_parameters()]
    buffers = {k: v for k, v in model.state_dict().items() if k not in set(named)}  # read to check, not kept
    read_into(folder, dict(zip(named, ema.shadow_params)), ignore=buffers.keys())


# safetensors' dtype names (the format's header)
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def read_into(folder: str, targets: Dict[str, torch.Tensor], ignore=()) -> None:
    """Fill ``targets`` ({name: tensor}, e.g. a model's ``state_dict()``) in place from the ``.safetensors`` files
    of ``folder`` (one file or shards), one tensor at a time with plain reads. No second copy of the weights exists
    at any moment: safetensors' ``load_file`` would hold all of them beside the model, and a memory map counts the
    file's pages in the process's memory. As ``load_state_dict(strict=True)``: every target must be in the files
    with its shape, and every tensor of the files must be a target (or in ``ignore``)."""
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    left, unexpected, ignore = dict(targets), [], set(ignore)
    for name in files:
        with open(os.path.join(folder, name), "rb", buffering=0) as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
            header.pop("__metadata__", None)
            for key, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
                target = left.pop(key, None)
                if target is None:
                    if key not in ignore:
                        unexpected.append(key)
                    continue
                if list(target.shape) != list(entry["shape"]):
                    raise ValueError(f"{folder}: {key} has shape {entry['shape']} in the file, "
                                     f"{list(target.shape)} in the model")
                f.seek(8 + size + entry["data_offsets"][0])
                _read_tensor(f, target, SAFETENSORS_DTYPES[entry["dtype"]])
    if left or unexpected:
        raise ValueError(f"{folder}: weights do not fit the model: missing {sorted(left)[:5]} ({len(left)}), "
                         f"unexpected {sorted(unexpected)[:5]} ({len(unexpected)})")


def _read_tensor(f, target: torch.Tensor, dtype: torch.dtype) -> None:
    """Read the next ``target.numel()`` elements of ``dtype`` from ``f`` into ``target``: straight into its memory
    when it is a contiguous CPU tensor of that dtype, else through a buffer of this one tensor."""
    direct = target.device.type == "cpu" and target.is_contiguous() and target.dtype == dtype
    buffer = target.detach() if direct else torch.empty(target.shape, dtype=dtype)
    view = memoryview(buffer.reshape(-1).view(torch.uint8).numpy())
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            raise ValueError(f"{f.name}: the file ends inside a tensor (truncated)")
        done += got
    if not direct:
        with torch.no_grad():
            target.copy_(buffer)


def save_checkpoint(accelerator, output_dir: str, step: int, cfg, state: dict, generator: torch.Generator,
                    extra: Optional[Callable[[str], None]] = None, total_limit: Optional[int] = None) -> str:
    """Write ``checkpoint-<step>`` atomically; every rank must call this. Returns the final path.

    ``state`` (JSON-serialisable) becomes trainer_state.json; ``extra(folder)`` writes stage files (main process).
    """
    final = os.path.join(output_dir, f"{PREFIX}{step}")
    tmp = os.path.join(output_dir, f"{TMP_PREFIX}{step}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    torch.save(generator.get_state(), os.path.join(tmp, f"generator_{accelerator.process_index}.pt"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra is not None:
            extra(tmp)
        cfg.write(tmp)
        write_json(state, os.path.join(tmp, STATE_FILE), indent=2)
        shutil.rmtree(final, ignore_errors=True)  # a complete older save of the same step (re-run after a kill)
        os.replace(tmp, final)
        prune(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str, generator: torch.Generator) -> dict:
    """Restore the accelerate state (model, optimizer, lr schedule, RNGs) and this rank's generator from
    ``path``; return its trainer_state.json.

    The model (and EMA) weights are read into the model in place (:func:`read_into`). The optimizer state is
    memory-mapped (``torch.load(mmap=True)``): its tensors stay in the file's pages until the first step writes them.
    Read into anonymous memory instead, the state (2× the weights for AdamW) would be there when the DataLoader forks
    its workers, and the first step's writes would copy every page of it (copy-on-write) while the workers hold the
    originals: a second full copy that a fresh run, whose state is created after the fork, never has. Under several
    processes the ranks share the file's pages instead of each holding the state on the host. The file's disk space
    is held until the run ends, even when ``checkpoints_total_limit`` prunes its checkpoint.
    """
    accelerator.load_state(path, load_kwargs={"mmap": True})
    gen_file = os.path.join(path, f"generator_{accelerator.process_index}.pt")
    state = read_json(os.path.join(path, STATE_FILE))
    if os.path.isfile(gen_file):
        generator.set_state(torch.load(gen_file, weights_only=True))
    else:  # resumed with more processes than saved it: a fresh, still rank-distinct stream
        generator.manual_seed(generator.initial_seed() + state["global_step"])
    return state
