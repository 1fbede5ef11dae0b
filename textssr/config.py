"""Load and validate the Python config files of the three stages, infer, eval and synthesis.

Configs are plain Python files read with mmengine's ``Config`` (``_base_`` inheritance) and
overridden from the command line with ``--cfg-options key=value`` (mmengine's ``DictAction``).
A config mistake is a :class:`ConfigError`: the scripts print its one line and exit 2, before any
model is built.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterable, Optional, Sequence

from mmengine.config import Config, DictAction


class ConfigError(Exception):
    """A config value that cannot work. The message is one line naming the key, the value and the fix."""


def add_config_args(parser: argparse.ArgumentParser, default_config: Optional[str] = None) -> argparse.ArgumentParser:
    """Add the ``--config`` and ``--cfg-options`` flags every entry point shares."""
    parser.add_argument("--config", default=default_config, required=default_config is None,
                        help="Python config file (mmengine format, `_base_` inheritance allowed)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None, metavar="KEY=VALUE",
                        help="override config values, e.g. --cfg-options learning_rate=5e-5 max_train_steps=10")
    return parser


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read ``path`` and apply ``cfg_options``; a missing or broken file is a ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path} (see configs/ for the shipped ones)")
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # mmengine raises many kinds; the user needs the file and the reason
        raise ConfigError(f"cannot read config {path}: {type(exc).__name__}: {exc}") from exc
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
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


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "",
                 default_config: Optional[str] = None) -> Config:
    """Parse ``--config``/``--cfg-options`` from ``argv`` and return the loaded config."""
    parser = add_config_args(argparse.ArgumentParser(description=description), default_config)
    args = parser.parse_args(argv)
    return load_config(args.config, args.cfg_options)


def exit_on_config_error(exc: ConfigError) -> None:
    """Print the one-line message the user acts on and exit with status 2."""
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)
