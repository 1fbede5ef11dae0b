"""The process group every script forms, with the one timeout that bounds how long ranks wait for each other.

Rank 0 works alone while the others wait in a collective: it writes each checkpoint (SD 2.1's UNet, its optimizer
state and EMA: ~15 GB), prunes old ones, draws the TensorBoard sample grid; infer.py's ranks finish their loops
unevenly before they gather. torch's default group timeout (10 minutes for NCCL) kills such a run on slow shared
storage, so every script forms its group with ``ddp_timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`), and a
wait that still runs out stops the run with one line naming the key (:func:`waiting`). Under NCCL the watchdog
aborts the process instead of raising; its log names the timeout in milliseconds.
"""
from __future__ import annotations

import contextlib
import datetime
import time
from typing import Callable, List, Optional, TypeVar

from accelerate import PartialState
import torch
from accelerate.utils import InitProcessGroupKwargs, gather, parse_flag_from_env

from textssr.config.checks import RunStopped
from textssr.utils.errors import InputError, on_every_rank

T = TypeVar("T")
KEY = "ddp_timeout"
DEFAULT_TIMEOUT_S = 7200  # 2 h: a 15 GB checkpoint written at ~2 MB/s still fits


def group_kwargs(timeout_s: float) -> InitProcessGroupKwargs:
    """The handler that gives an ``Accelerator`` the group timeout (for its own bookkeeping; the group itself is
    formed by :func:`process_state`)."""
    return InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=float(timeout_s)))


def use_cpu(device: str = "auto") -> bool:
    """The one device rule of every script: the CPU when ``device`` says "cpu", when there is no GPU, or when
    ``ACCELERATE_USE_CPU`` is set (then processes started by torchrun / ``accelerate launch --multi_gpu`` form a
    gloo group, which accelerate's ``--cpu`` launcher alone does not); else each process's own GPU."""
    return device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def device_of(device: str) -> torch.device:
    """The device one process uses (:func:`use_cpu`'s rule): the CPU or the current GPU."""
    return torch.device("cpu") if use_cpu(device) else torch.device("cuda", torch.cuda.current_device())


def process_state(device: str, timeout_s: float) -> PartialState:
    """accelerate's process state on the device :func:`use_cpu` picks, its group (gloo on CPUs, NCCL on GPUs)
    formed with ``timeout_s``; it sets each rank's device. An ``Accelerator`` made afterwards shares it."""
    return PartialState(cpu=use_cpu(device), **group_kwargs(timeout_s).to_kwargs())


def ranks_flagged(flags, device: torch.device) -> List[List[int]]:
    """For each of the booleans ``flags`` (this rank's view), the ranks where it holds — the same lists on every
    rank (one all-gather; without a process group, this process alone as rank 0). Every rank must call it at the
    same point. For decisions taken from each rank's own view (its first batch, its disk) that all must share."""
    local = torch.tensor([[int(bool(f)) for f in flags]], dtype=torch.int64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        local = gather(local)  # (world, len(flags)), in rank order
    return [[rank for rank, row in enumerate(local.tolist()) if row[i]] for i in range(len(flags))]


def rank_zero_choice(value):
    """Rank 0's ``value`` on every rank (a broadcast; without a process group, ``value``): for what one rank must
    decide for all, e.g. which checkpoint to resume from when ranks list a shared disk each on their own."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
            or torch.distributed.get_world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)  # any initialised group: accelerate's, or train_str.py's own
    return box[0]


def rank_zero_decision(decide: Callable[[], T]) -> T:
    """``decide()`` run by rank 0 alone, its value on every rank (:func:`rank_zero_choice`). Its refusal (an
    InputError: a ConfigError, a DataError) is raised on every rank, printed once; any other error stops the other
    ranks at once too (one line naming it) instead of leaving them in the broadcast until ``ddp_timeout``."""
    outcome = None
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
            or torch.distributed.get_rank() == 0:
        try:
            outcome = (decide(), None, None)
        except InputError as exc:
            outcome = (None, exc, None)
        except Exception as exc:
            rank_zero_choice((None, None, f"{type(exc).__name__}: {exc}"))
            raise
    value, refusal, crash = rank_zero_choice(outcome)
    if refusal is not None:
        raise on_every_rank(refusal)
    if crash is not None:
        raise on_every_rank(RunStopped(f"rank 0 failed deciding for every rank ({crash}); see rank 0's error"))
    return value


def names(ranks: List[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _is_timeout(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "timed out" in text or "timeout" in text


def poll_until(ready: Callable[[], Optional[T]], timeout_s: float, poll_s: float, stopped: Callable[[], str],
               first_pause_s: Optional[float] = None) -> T:
    """Call ``ready()`` until it returns something other than None, and return that: the one way a rank waits for
    files other ranks write. Pauses start at ``first_pause_s`` (default ``poll_s``) and double up to ``poll_s``;
    past ``timeout_s`` (``ddp_timeout``) the wait ends with RunStopped(``stopped()``), one line naming what it
    waited for (built then, so that it can name what is still missing)."""
    deadline = time.monotonic() + float(timeout_s)
    pause = float(poll_s if first_pause_s is None else first_pause_s)
    while True:
        value = ready()
        if value is not None:
            return value
        left = deadline - time.monotonic()
        if left < 0:
            raise RunStopped(stopped())
        time.sleep(min(pause, left) or pause)
        pause = min(2 * pause, float(poll_s))


@contextlib.contextmanager
def waiting(state, timeout_s: float, what: str):
    """Turn a collective that ran past the group timeout inside the block into one :class:`RunStopped` line
    naming ``ddp_timeout``; ``what`` says what the others were doing meanwhile."""
    try:
        yield
    except RunStopped:  # already one line (which may itself name ddp_timeout)
        raise
    except RuntimeError as exc:  # gloo raises RuntimeError, NCCL DistBackendError (a RuntimeError)
        if state.num_processes == 1 or not _is_timeout(exc):
            raise
        raise RunStopped(f"rank {state.process_index} waited more than {KEY}={float(timeout_s):g} s for the other "
                         f"processes ({what}); raise {KEY} (seconds), e.g. --cfg-options {KEY}="
                         f"{max(4 * float(timeout_s), DEFAULT_TIMEOUT_S):g}") from exc
