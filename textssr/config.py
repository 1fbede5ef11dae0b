"""Load and validate the Python config files of the three stages, infer, eval and synthesis.

Configs are plain Python files read with mmengine's ``Config`` (``_base_`` inheritance) and
overridden from the command line with ``--cfg-options key=value`` (mmengine's ``DictAction``).
A config mistake is a :class:`ConfigError`: the scripts print its one line and exit 2, before any
model is built. Each script checks its config against a *schema*, the shipped config that documents every
key it reads (``configs/train_vae_cfg.py``, ...): a key the schema lacks — a typo in ``--cfg-options`` or in a
user config — is an error naming the closest known key.

Only a ``--config`` the user names is Python that runs. The resolved config a training run saves beside its
checkpoints is *read as data* (:func:`read_run_config`: ``train_config.json``, or the literals of an older
``config.py``, never executed).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import functools
import json
import math
import os
import sys
import tempfile
from typing import Callable, Iterable, Optional, Sequence

from mmengine.config import Config, DictAction

RUN_CONFIG_PY, RUN_CONFIG_JSON = "config.py", "train_config.json"  # a training run's resolved config
INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT)


class ConfigError(Exception):
    """A config value that cannot work. The message is one line naming the key, the value and the fix."""


def add_config_args(parser: argparse.ArgumentParser, default_config: Optional[str] = None) -> argparse.ArgumentParser:
    """Add the ``--config`` and ``--cfg-options`` flags every entry point shares."""
    parser.add_argument("--config", default=default_config, required=default_config is None,
                        help="Python config file (mmengine format, `_base_` inheritance allowed)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None, metavar="KEY=VALUE",
                        help="override config values, e.g. --cfg-options learning_rate=5e-5 max_train_steps=10")
    return parser


@functools.lru_cache(maxsize=8)
def schema_keys(schema: str) -> frozenset:
    """The top-level keys of the reference config ``schema`` (what a script knows)."""
    return frozenset(k for k in Config.fromfile(schema).keys() if not k.startswith("_"))


def unknown_key_error(key: str, known: Iterable[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint}; the keys this script reads are documented "
                       "in its shipped config (configs/)")


def load_config(path: str, cfg_options: Optional[dict] = None, schema: Optional[str] = None) -> Config:
    """Read ``path`` and apply ``cfg_options``; a missing or broken file is a ConfigError.

    With ``schema`` (a reference config), every top-level key of the file and of ``cfg_options`` must be one of
    the schema's; without it, ``cfg_options`` may only override keys the file has. Keys starting with ``_`` are
    mmengine's own and never checked.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path} (see configs/ for the shipped ones)")
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # mmengine raises many kinds; the user needs the file and the reason
        raise ConfigError(f"cannot read config {path}: {type(exc).__name__}: {_first_line(exc)}") from exc
    known = schema_keys(schema) if schema else frozenset(cfg.keys())
    if schema:
        for key in cfg.keys():
            if not key.startswith("_") and key not in known:
                raise unknown_key_error(key, known, path)
    if cfg_options:
        for key in cfg_options:
            top = key.split(".", 1)[0]
            if not top.startswith("_") and top not in known:
                raise unknown_key_error(top, known, "--cfg-options")
            if "." in key and cfg.get(top, "") is None:  # screening.match=ned where screening = None: a new dict
                cfg[top] = {}
        try:
            cfg.merge_from_dict(cfg_options)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ConfigError(f"--cfg-options {' '.join(f'{k}={v!r}' for k, v in cfg_options.items())}: "
                              f"{_first_line(exc)}") from exc
    return cfg


def require_keys(cfg: Config, keys: Iterable[str], where: str = "config") -> None:
    """Fail with one line listing every key the config lacks."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConfigError(f"{where} is missing required key(s): {', '.join(missing)}")


def require_path(path: Optional[str], key: str, hint: str = "") -> str:
    """Return ``path`` if it exists, else raise a ConfigError naming ``key`` and how to obtain it."""
    if path is None or not os.path.exists(str(path)):
        fix = f" — {hint}" if hint else ""
        raise ConfigError(f"{key}: path not found: {path}{fix}")
    return str(path)


# ------------------------------------------------------------------------------------------- typed values


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


def check_output_dir(path, key: str = "output_dir") -> str:
    """``path`` is (or can become) a writable folder: not a file, and its nearest existing ancestor writable."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigError(f"{key}={path!r}: must be a folder path")
    path = str(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{key}={path}: is a file, not a folder; choose another {key}")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{key}={path}: {existing} is a file, so the folder cannot be created; choose another {key}")
    try:  # a probe, not os.access: root passes access() on folders where nothing can be created (/proc, ...)
        os.rmdir(tempfile.mkdtemp(prefix=".textssr-write-probe-", dir=existing))
    except OSError as exc:
        raise ConfigError(f"{key}={path}: cannot create anything in {existing} ({exc.strerror}); choose another {key} "
                          "or fix its permissions") from None
    return path


# ------------------------------------------------------------------------------------------- run configs


def dump_run_config(cfg: Config, folder: str) -> None:
    """Write the resolved config into ``folder``: ``config.py`` for people, ``train_config.json`` as data."""
    cfg.dump(os.path.join(folder, RUN_CONFIG_PY))
    tmp = os.path.join(folder, RUN_CONFIG_JSON + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cfg.to_dict(), f, indent=1, ensure_ascii=False, default=str)
    os.replace(tmp, os.path.join(folder, RUN_CONFIG_JSON))


def read_run_config(folder: str) -> dict:
    """The resolved training config saved in ``folder`` (a run or checkpoint folder), read as data: its
    ``train_config.json``, else the literal assignments of its ``config.py`` (checkpoints written before the JSON
    existed) parsed without executing anything; {} when neither is there."""
    json_path, py_path = os.path.join(folder, RUN_CONFIG_JSON), os.path.join(folder, RUN_CONFIG_PY)
    if os.path.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8-sig") as f:
                content = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{json_path}: unreadable ({exc}); delete it or the checkpoint folder") from exc
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


# ------------------------------------------------------------------------------------------- scripts


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "",
                 default_config: Optional[str] = None, schema: Optional[str] = None) -> Config:
    """Parse ``--config``/``--cfg-options`` from ``argv`` and return the loaded config (checked against
    ``schema`` when given)."""
    parser = add_config_args(argparse.ArgumentParser(description=description), default_config)
    args = parser.parse_args(argv)
    return load_config(args.config, args.cfg_options, schema=schema)


def exit_on_config_error(exc: ConfigError) -> None:
    """Print the one-line message the user acts on and exit with status 2."""
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)


def run_script(main: Callable[[], object], resumable: bool = True) -> object:
    """Run a script's body: a ConfigError is one line and exit status 2; Ctrl-C one line ("rerun to resume") and
    exit status 130, no traceback."""
    try:
        return main()
    except ConfigError as exc:
        exit_on_config_error(exc)
    except KeyboardInterrupt:
        from tqdm import tqdm
        for bar in list(getattr(tqdm, "_instances", ())):  # close progress bars first: the message is the last line
            bar.close()
        print("\ninterrupted" + ("; rerun the same command to resume" if resumable else ""), file=sys.stderr)
        raise SystemExit(INTERRUPTED)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
