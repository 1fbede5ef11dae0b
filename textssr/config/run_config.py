"""The resolved settings a training run saves — in its run folder and in every checkpoint — as data
(``settings.json``, :meth:`textssr.config.settings.Settings.write`), and how a run's saved settings are read back:
as data, never executed. Runs written before ``settings.json`` existed hold ``train_config.json`` (the same, as
data) and the original's checkpoints a ``config.py`` (Python: only its literal assignments are parsed, nothing runs).

Not to be confused with a model's ``config.json`` (diffusers' architecture config, ``textssr.models.loading``).
"""
from __future__ import annotations

import ast
import os

from textssr.config.checks import config_errors
from textssr.config.settings import SETTINGS_FILE
from textssr.utils.jsonio import read_json

RUN_CONFIG_PY, RUN_CONFIG_JSON = "config.py", "train_config.json"


def read_run_config(folder: str) -> dict:
    """The resolved training settings saved in ``folder`` (a run or checkpoint folder), read as data: its
    ``settings.json``, else ``train_config.json``, else the literal assignments of its ``config.py`` (the original's
    checkpoints) parsed without executing anything; {} when there is none."""
    for name in (SETTINGS_FILE, RUN_CONFIG_JSON):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with config_errors(OSError, ValueError, prefix=f"{path}: unreadable (",
                               suffix="); delete it or the checkpoint folder"):
                content = read_json(path)
            return {k: v for k, v in content.items() if not k.startswith("_")} if isinstance(content, dict) else {}
    py_path = os.path.join(folder, RUN_CONFIG_PY)
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
