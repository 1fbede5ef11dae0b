"""The one-line errors every layer raises for input that cannot work; the scripts print them as ``error: ...``
(exit status 2) at their boundary (:func:`textssr.config.checks.run_script`)."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Sequence


class InputError(Exception):
    """An input (a config value, a file, a dataset) that cannot work: one line naming it, the value and the fix."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def reraised_as(error: type, *types: type, prefix: str = "", suffix: str = "", brief: bool = False):
    """Re-raise a ``types`` exception (default: ValueError, TypeError) of the block as ``error`` (an InputError
    class), its message (only its first line with ``brief``) between ``prefix`` and ``suffix``."""
    try:
        yield
    except (types or (ValueError, TypeError)) as exc:
        raise error(f"{prefix}{first_line(exc) if brief else exc}{suffix}") from exc


def check_choice(value, key: str, choices: Sequence, hint: str = "", error: type = InputError):
    """``value`` if it is one of ``choices``, else ``error`` naming ``key``, the choices and ``hint``."""
    if value not in choices:
        raise error(f"{key}={value!r}; choose one of {choices}" + (f" {hint}" if hint else ""))
    return value


def on_every_rank(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised alike on every rank of a launch (a decision rank 0 took for all, or reduced over
    ranks): its line is printed once, by the main process (:func:`printed_here`). Returns ``exc``."""
    exc.every_rank = True
    return exc


def printed_here(exc: BaseException) -> bool:
    """Whether this process prints ``exc``'s line: always, unless every rank raised it alike and this is not rank 0
    (``RANK``, set by torchrun / accelerate launch)."""
    return not getattr(exc, "every_rank", False) or os.environ.get("RANK", "0") == "0"


def exit_on_input_error(exc: BaseException) -> None:
    """Print the one-line message the user acts on (once per launch where every rank raised it) and exit with
    status 2."""
    if printed_here(exc):
        print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)
