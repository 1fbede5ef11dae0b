"""The resolved config a training run saves — in its run folder and in every checkpoint — for people
(``config.py``) and as data (``train_config.json``), and how it is read back: as data, never executed. A downloaded
checkpoint's ``config.py`` is Python; ``infer.py`` and ``synthesize.py`` read ``train_config.json`` or, for
checkpoints written before it existed, only the literal assignments of ``config.py`` (parsed, not run).

Not to be confused with a model's ``config.json`` (diffusers' architecture config, ``textssr.models.loading``).
"""
from __future__ import annotations

import ast
import os

from mmengine.config import Config

from textssr.config.checks import config_errors
from textssr.utils.jsonio import read_json, write_json

RUN_CONFIG_PY, RUN_CONFIG_JSON = "config.py", "train_config.json"


def dump_run_config(cfg: Config, folder: str) -> None:
    """Write the resolved config into ``folder``: ``config.py`` for people, ``train_config.json`` as data."""
    cfg.dump(os.path.join(folder, RUN_CONFIG_PY))
    write_json(cfg.to_dict(), os.path.join(folder, RUN_CONFIG_JSON))


def read_run_config(folder: str) -> dict:
    """The resolved training config saved in ``folder`` (a run or checkpoint folder), read as data: its
    ``train_config.json``, else the literal assignments of its ``config.py`` (checkpoints written before the JSON
    existed) parsed without executing anything; {} when neither is there."""
    json_path, py_path = os.path.join(folder, RUN_CONFIG_JSON), os.path.join(folder, RUN_CONFIG_PY)
    if os.path.isfile(json_path):
        with config_errors(OSError, ValueError, prefix=f"{json_path}: unreadable (",
                           suffix="); delete it or the checkpoint folder"):
            content = read_json(json_path)
        return content if isinstance(content, dict) else {}
    if os.path.isfile(py_path):
        with open(py_path, encoding="utf-8") as f:
            return literal_assignments(f.read())
    return {}


def literal_assignments(source: str) -> dict:
    """``name = <literal>`` statements of a Python file, evaluated as literals only (numbers, strings, None,
    booleans, lists, tuples, dicts and ``dict(key=literal, ...)``); anything else is left out. Nothing runs."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = _literal(node.value)
            except ValueError:
                continue
    return out


def _literal(node):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)  # constants, signed numbers; raises ValueError for anything else
