"""Start-up checks every entry point shares: typed config values (an integer that is an integer, a seed >= 0), an
output folder that can be written, other errors turned into ConfigError lines (:func:`config_errors`), and the
script wrapper that turns a ConfigError into one line (exit 2) and Ctrl-C into "interrupted; rerun the same command
to resume" (exit 130) — all before a model loads or a file is written."""
from __future__ import annotations

import math
import sys
from typing import Callable, Optional

from tqdm import tqdm

from textssr.config import ConfigError
from textssr.utils import paths
from textssr.utils.errors import InputError, exit_on_input_error, first_line, printed_here, reraised_as

INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT)
STOPPED = NOTHING_DONE = 1  # exit status of a run stopped by RunStopped


class RunStopped(RuntimeError):
    """A run that cannot go on (non-finite numbers, processes that waited past ``ddp_timeout``): the message is one
    line saying what happened, where, and the fix; run_script prints it and exits 1."""


class SharedStop(RunStopped):
    """A stop every rank takes together, at the same point, with the same message (the decision was reduced over
    ranks): run_script prints its line once, on the main process (``RANK`` 0), and every rank exits 1."""
    every_rank = True


class NothingToDo(RunStopped):
    """A run whose inputs leave nothing to do (every instance filtered or skipped), or that produced nothing: one
    line naming the counts, exit status 1 (:func:`run_script`). Raised before the models load where that is known."""


def as_int(value, key: str, minimum: Optional[int] = None, allow_none: bool = False) -> Optional[int]:
    """``value`` as an int (an integral float such as ``3.0`` is accepted), else a ConfigError naming ``key``:
    strings, booleans and fractions (``2.7`` would silently become 2) are refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ConfigError(f"{key}={value!r}: must be an integer{bound}" + (" or None" if allow_none else ""))
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}={value}: must be >= {minimum}")
    return value


def as_float(value, key: str, minimum: Optional[float] = None, exclusive: bool = False,
             allow_none: bool = False) -> Optional[float]:
    """``value`` as a finite float (ints accepted), else a ConfigError naming ``key``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be a number" + (" or None" if allow_none else ""))
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise ConfigError(f"{key}={value}: must be {'>' if exclusive else '>='} {minimum}")
    return float(value)


def check_seed(value, key: str = "seed") -> int:
    return as_int(value, key, minimum=0)


def config_errors(*types: type, **message):
    """Re-raise a ``types`` exception (default: ValueError, TypeError) of the block as a ConfigError, its message
    (``prefix``, ``suffix``, ``brief``: textssr.utils.errors.reraised_as): for checks in a data class or a helper
    that knows nothing of configs, and for file or model reads whose error should name what was read."""
    return reraised_as(ConfigError, *types, **message)


def check_output_dir(path, key: str = "output_dir") -> str:
    """``path`` is (or can become) a writable folder, else a ConfigError naming ``key``."""
    return paths.check_output_dir(path, key, ConfigError)


def run_script(main: Callable[[], object], resumable: bool = True) -> object:
    """Run a script's body: a ConfigError is one line and exit status 2; NothingToDo one line and exit status 1;
    Ctrl-C one line ("rerun to resume") and exit status 130, no traceback."""
    try:
        return main()
    except InputError as exc:  # a config value, or an input file the data or model layer could not use
        exit_on_input_error(exc)
    except RunStopped as exc:  # NothingToDo included
        if printed_here(exc):
            _close_progress_bars()  # the message on a line of its own
            print(f"error: {first_line(exc)}", file=sys.stderr)
        raise SystemExit(STOPPED)
    except KeyboardInterrupt:
        _close_progress_bars()  # the message is the last line
        print("\ninterrupted" + ("; rerun the same command to resume" if resumable else ""), file=sys.stderr)
        raise SystemExit(INTERRUPTED)


def _close_progress_bars() -> None:
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
