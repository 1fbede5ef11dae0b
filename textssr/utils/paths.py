"""Output folders checked before anything is written."""
from __future__ import annotations

import os
import tempfile

from textssr.utils.errors import InputError


def check_output_dir(path, key: str = "output_dir", error: type = InputError) -> str:
    """``path`` is (or can become) a writable folder: not a file, and its nearest existing ancestor writable; else
    ``error`` (one line naming ``key``)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise error(f"{key}={path!r}: must be a folder path")
    path = str(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise error(f"{key}={path}: is a file, not a folder; choose another {key}")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise error(f"{key}={path}: {existing} is a file, so the folder cannot be created; choose another {key}")
    try:  # a probe, not os.access: root passes access() on folders where nothing can be created (/proc, ...)
        os.rmdir(tempfile.mkdtemp(prefix=".textssr-write-probe-", dir=existing))
    except OSError as exc:
        raise error(f"{key}={path}: cannot create anything in {existing} ({exc.strerror}); choose another {key} "
                          "or fix its permissions") from None
    return path
