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

import os
import shutil
from typing import Callable, Dict, List, Optional, Tuple

import torch
from diffusers.models.model_loading_utils import load_state_dict

from textssr.config import ConfigError
from textssr.utils.jsonio import read_json, write_json
from textssr.models.loading import find_checkpoints

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
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, subfolder),
                                                                safe_serialization=True)
            if ema is not None:
                ema.save_pretrained(os.path.join(output_dir, f"{subfolder}_ema"))
        weights.clear()  # accelerate saves nothing else for the models

    def load_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            model.load_state_dict(_read_weights(os.path.join(input_dir, subfolder)))
        if ema is not None:
            ema_dir = os.path.join(input_dir, f"{subfolder}_ema")
            if not os.path.isdir(ema_dir):
                raise ConfigError(f"use_ema=True but {ema_dir} is missing: the checkpoint was written without EMA; "
                                  "resume with use_ema=False or from a checkpoint that has it")
            loaded = ema.__class__.from_pretrained(ema_dir, model_cls=ema.model_cls)
            ema.load_state_dict(loaded.state_dict())
            ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _read_weights(folder: str) -> Dict[str, torch.Tensor]:
    """All weights of a diffusers model folder (one file or shards)."""
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    state = {}
    for name in files:
        state.update(load_state_dict(os.path.join(folder, name)))
    return state


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
    ``path``; return its trainer_state.json."""
    accelerator.load_state(path)
    gen_file = os.path.join(path, f"generator_{accelerator.process_index}.pt")
    state = read_json(os.path.join(path, STATE_FILE))
    if os.path.isfile(gen_file):
        generator.set_state(torch.load(gen_file, weights_only=True))
    else:  # resumed with more processes than saved it: a fresh, still rank-distinct stream
        generator.manual_seed(generator.initial_seed() + state["global_step"])
    return state
