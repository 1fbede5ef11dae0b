"""The data layer's own errors: an annotation file, image folder, font or LMDB that cannot be used is a
:class:`DataError` — one line naming the input and the fix. The scripts print it as ``error: ...`` (exit status 2),
as they print a config mistake; nothing here knows about configs."""
from __future__ import annotations

import contextlib
from typing import Sequence

from textssr.utils.errors import InputError, first_line


class DataError(InputError):
    """Input data that cannot be used: one line naming it, what is wrong and the fix."""


@contextlib.contextmanager
def data_errors(*types: type, prefix: str = "", suffix: str = "", brief: bool = False):
    """Re-raise a ``types`` exception (default: ValueError, TypeError) of the block as a DataError, its message (its
    first line with ``brief``) between ``prefix`` and ``suffix``."""
    try:
        yield
    except (types or (ValueError, TypeError)) as exc:
        raise DataError(f"{prefix}{first_line(exc) if brief else exc}{suffix}") from exc


def check_choice(value, key: str, choices: Sequence, hint: str = ""):
    """``value`` if it is one of ``choices``, else a DataError naming ``key``."""
    if value not in choices:
        raise DataError(f"{key}={value!r}; choose one of {tuple(choices)}" + (f" {hint}" if hint else ""))
    return value
