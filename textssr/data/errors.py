"""The data layer's own errors: an annotation file, image folder, font or LMDB that cannot be used is a
:class:`DataError` — one line naming the input and the fix. The scripts print it as ``error: ...`` (exit status 2),
as they print a config mistake; nothing here knows about configs."""
from __future__ import annotations

from typing import Sequence

from textssr.utils import errors
from textssr.utils.errors import InputError, reraised_as


class DataError(InputError):
    """Input data that cannot be used: one line naming it, what is wrong and the fix."""


def data_errors(*types: type, **message):
    """Re-raise a ``types`` exception of the block as a DataError (textssr.utils.errors.reraised_as)."""
    return reraised_as(DataError, *types, **message)


def check_choice(value, key: str, choices: Sequence, hint: str = ""):
    """``value`` if it is one of ``choices``, else a DataError naming ``key``."""
    return errors.check_choice(value, key, choices, hint, DataError)
