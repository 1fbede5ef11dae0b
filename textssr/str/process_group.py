"""The process group of a multi-process ``train_str.py`` (``torchrun --nproc_per_node N``), formed by us.

OpenOCR's trainer forms a group only where it sees more than one GPU (NCCL, torch's default timeout); on a machine
without GPUs, or with one, every process would train alone into the same folder. So the group is formed here for
every launch with ``WORLD_SIZE`` > 1 — NCCL where each process has its GPU, gloo on the CPU (as accelerate does) —
with ``ddp_timeout`` seconds, and every wait that runs out is one line naming that key.
"""
from __future__ import annotations

import datetime
import os




def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def uses_cuda(device: str) -> bool:
    import torch
    return device == "gpu" and torch.cuda.is_available()


def form(device: str, timeout_s: float) -> bool:
    """Form the group of a multi-process launch (no-op for one process, or when formed already); True when this
    run is distributed. On GPUs each process takes the GPU of its ``LOCAL_RANK``."""
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return False
    if not dist.is_initialized():
        cuda = uses_cuda(device)
        if cuda:
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=float(timeout_s)))
    return True


def leave() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


def waiting(timeout_s: float, what: str):
    """A collective inside the block that runs past the timeout becomes one RunStopped line naming ``ddp_timeout``
    and ``what`` the others were doing (the scripts' one rule, textssr.runtime.distributed.waiting, for a group
    formed here rather than by accelerate)."""
    from types import SimpleNamespace
    from textssr.runtime import distributed
    return distributed.waiting(SimpleNamespace(num_processes=world_size(), process_index=rank()), timeout_s, what)


def barrier(timeout_s: float, what: str) -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        with waiting(timeout_s, what):
            dist.barrier()


def agree_min(value: int) -> int:
    """The smallest ``value`` over the ranks (``value`` itself without a group)."""
    import torch
    import torch.distributed as dist
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.int64,
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (a decision made once; the scripts' rule,
    textssr.runtime.distributed.rank_zero_choice)."""
    from textssr.runtime import distributed
    return distributed.rank_zero_choice(obj)

