"""Load and validate the Python config files of the three stages, infer, eval and synthesis.

Configs are plain Python files read with mmengine's ``Config`` (``_base_`` inheritance), overridden from the command
line with ``--cfg-options key=value`` (mmengine's ``DictAction``; ``key=dict(a=1)`` too, :class:`ConfigOptionsAction`).
A config mistake is a :class:`ConfigError`: the scripts print its one line and exit 2, before any model is built.
Each script checks its config against a *schema*, the shipped config that documents every key it reads
(``configs/train_vae_cfg.py``, ...): a key the schema lacks — a typo in ``--cfg-options`` or in a user config — is an
error naming the closest known key.

Only a ``--config`` the user names is Python that runs (what a checkpoint carries is read as data:
:mod:`textssr.config.run_config`).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import functools
import os
from typing import Iterable, Optional, Sequence

from mmengine.config import Config, DictAction

from textssr.utils import errors
from textssr.utils.errors import InputError, first_line


class ConfigError(InputError):
    """A config value that cannot work. The message is one line naming the key, the value and the fix."""


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
    """Read ``path`` and apply ``cfg_options``; a missing or broken file is a ConfigError. With ``schema`` (a
    reference config) every top-level key of the file and of ``cfg_options`` must be one of the schema's, without it
    ``cfg_options`` may only override keys the file has; keys starting with ``_`` are mmengine's and never checked.
    A dict value in ``cfg_options`` replaces the key's value whole; ``key.sub`` changes one entry of it."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path} (see configs/ for the shipped ones)")
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # mmengine raises many kinds; the user needs the file and the reason
        raise ConfigError(f"cannot read config {path}: {type(exc).__name__}: {first_line(exc)}") from exc
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
        # a dict value (key=dict(a=1)) replaces the key's value whole; key.a=1 changes one entry
        replacing = {k: dict(v, _delete_=True) if isinstance(v, dict) else v for k, v in cfg_options.items()}
        try:
            cfg.merge_from_dict(replacing)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ConfigError(f"--cfg-options {' '.join(f'{k}={v!r}' for k, v in cfg_options.items())}: "
                              f"{first_line(exc)}") from exc
    return cfg


def require_keys(cfg: Config, keys: Iterable[str], where: str = "config") -> None:
    """Fail with one line listing every key the config lacks."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConfigError(f"{where} is missing required key(s): {', '.join(missing)}")


def require_path(path: Optional[str], key: str, hint: str = "") -> str:
    """Return ``path`` if it exists, else raise a ConfigError naming ``key`` and how to obtain it."""
    if path is None or not os.path.exists(str(path)):
        raise ConfigError(f"{key}: path not found: {path}" + (f" — {hint}" if hint else ""))
    return str(path)


def check_choice(value, key: str, choices: Sequence, hint: str = ""):
    """``value`` if it is one of ``choices``, else a ConfigError naming ``key``, the choices and ``hint``."""
    return errors.check_choice(value, key, choices, hint, ConfigError)


# ------------------------------------------------------------------------------------------- scripts


class ConfigOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``key=1``, ``key=a,b``, ``key=[1,(2,3)]``, ``key=None``), plus dict values:
    ``key=dict(a=1,b='x')`` or ``key={'a':1}``, nested and with Python literals only (a bare word is a string, as
    DictAction reads it). DictAction alone recurses forever on ``dict(a=1,b=2)`` (a comma inside brackets that do
    not enclose the whole value); anything it cannot read is a ConfigError, never a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values or ():
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--cfg-options {item!r}: expected KEY=VALUE, e.g. batch_size=4")
            options[key] = option_value(key, text)
        setattr(namespace, self.dest, options)


def option_value(key: str, text: str):
    """The value of ``key=text`` on the command line (see :class:`ConfigOptionsAction`)."""
    stripped = text.strip()
    if stripped.startswith(("dict(", "{")):
        try:
            return _literal(ast.parse(stripped, mode="eval").body)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise ConfigError(f"--cfg-options {key}={text}: cannot read it as a dict ({first_line(exc)}); write "
                              f"e.g. {key}=dict(a=1,b='x') with literal values") from None
    try:
        return DictAction._parse_iterable(text)
    except (AssertionError, RecursionError):
        raise ConfigError(f"--cfg-options {key}={text}: cannot read the value (unbalanced or stray brackets); "
                          "quote a string, write a list as [a,b] and a dict as dict(a=1)") from None


def _literal(node):
    """A Python literal from an ``ast`` node: constants, lists, tuples, dicts, ``dict(k=v, ...)`` calls, negative
    numbers; a bare name is its own string. Anything else (other calls, attributes, operators) is a ValueError."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
            and all(kw.arg is not None for kw in node.keywords)):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    raise ValueError(f"{ast.unparse(node)[:60]} is not a literal")


def add_config_args(parser: argparse.ArgumentParser, default_config: Optional[str] = None) -> argparse.ArgumentParser:
    """Add the ``--config`` and ``--cfg-options`` flags every entry point shares (edit.py and app.py add theirs)."""
    parser.add_argument("--config", default=default_config, required=default_config is None,
                        help="Python config file (mmengine format, `_base_` inheritance allowed)")
    parser.add_argument("--cfg-options", nargs="+", action=ConfigOptionsAction, default=None, metavar="KEY=VALUE",
                        help="override config values, e.g. --cfg-options learning_rate=5e-5 max_train_steps=10")
    return parser


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "",
                 default_config: Optional[str] = None, schema: Optional[str] = None) -> Config:
    """Parse ``--config``/``--cfg-options`` from ``argv`` and return the loaded config (checked against ``schema``
    when given)."""
    args = add_config_args(argparse.ArgumentParser(description=description), default_config).parse_args(argv)
    return load_config(args.config, args.cfg_options, schema=schema)
