"""JSON files: atomic UTF-8 writes, reads whose every failure is a ValueError."""
from __future__ import annotations

import json
import os
from typing import Optional


def write_json(obj, path: str, indent: Optional[int] = 1, **options) -> None:
    """Write ``obj`` as UTF-8 JSON (CJK kept readable, non-JSON values as ``str``) atomically: a temporary file,
    then a rename."""
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, default=str, **options)
    os.replace(f"{path}.tmp", path)


def read_json(path: str):
    """The JSON in ``path`` (a UTF-8 BOM, as Windows editors write, is allowed). Undecodable bytes, bad syntax and
    nesting deeper than Python's parser recurses (a RecursionError otherwise) are all a ValueError."""
    with open(path, encoding="utf-8-sig") as f:
        try:
            return json.load(f)
        except RecursionError:
            raise ValueError("nested too deeply to read (thousands of levels of brackets)") from None
