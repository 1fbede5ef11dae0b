"""The one-line errors every layer raises for input that cannot work; the scripts print them as ``error: ...``
(exit status 2) at their boundary (:func:`textssr.config.checks.run_script`)."""
from __future__ import annotations

import sys


class InputError(Exception):
    """An input (a config value, a file, a dataset) that cannot work: one line naming it, the value and the fix."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def exit_on_input_error(exc: BaseException) -> None:
    """Print the one-line message the user acts on and exit with status 2."""
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)
