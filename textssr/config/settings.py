"""One checked, frozen settings object per script, built once at its entry point.

A script reads its config (mmengine ``Config`` + ``--cfg-options``, :mod:`textssr.config.loading`), and
:meth:`Settings.from_config` turns it into its settings class: every key of the script's shipped config is a field
(a key the config lacks takes the shipped config's value: the shipped configs are the documented defaults, in one
place), every value is checked for its type and range — a wrong one is one :class:`ConfigError` line naming the key,
before anything heavy runs — and kept cast. Library code receives the settings (or plain arguments), never the raw
config. Checks that need several keys, files or models stay with the code that knows them (``validate``).

A field's ``resume`` flag says whether a rerun over an output folder must keep its value: the resume rule
(:func:`textssr.generation.settings`) is derived from the fields, not from a hand-kept list.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

from mmengine.config import Config

from textssr.config.loading import ConfigError
from textssr.utils.jsonio import write_json

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
SETTINGS_FILE = "settings.json"


# ------------------------------------------------------------------------------------------------ value checks


class Check:
    """A value check: ``check(value, key)`` returns the value (cast) or raises a ConfigError naming ``key``.
    ``bad`` lists values it refuses (the all-keys test feeds them to every script)."""

    bad: Tuple = ()
    optional = False

    def __call__(self, value, key: str):
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{key}=None: {self.describe()}")
        return self.check(value, key)

    def check(self, value, key: str):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Integer(Check):
    def __init__(self, minimum: Optional[int] = None, optional: bool = False):
        self.minimum, self.optional = minimum, optional
        self.bad = ("abc", 2.5) + ((minimum - 1,) if minimum is not None else ())

    def describe(self) -> str:
        bound = f" >= {self.minimum}" if self.minimum is not None else ""
        return f"must be an integer{bound}" + (" or None" if self.optional else "")

    def check(self, value, key):
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{key}={value}: must be >= {self.minimum}")
        return value


class Number(Check):
    def __init__(self, minimum: Optional[float] = None, maximum: Optional[float] = None, exclusive: bool = False,
                 optional: bool = False, below: bool = False):
        """``exclusive``: the minimum itself is refused; ``below``: the maximum itself is refused."""
        self.minimum, self.maximum, self.exclusive, self.below = minimum, maximum, exclusive, below
        self.optional = optional
        self.bad = ("abc",) + ((minimum if exclusive else minimum - 1,) if minimum is not None else ())

    def describe(self) -> str:
        low = f" {'>' if self.exclusive else '>='} {self.minimum}" if self.minimum is not None else ""
        high = f" {'<' if self.below else '<='} {self.maximum}" if self.maximum is not None else ""
        return f"must be a number{low}{' and' if low and high else ''}{high}" + (" or None" if self.optional else "")

    def check(self, value, key):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        if self.minimum is not None and (value <= self.minimum if self.exclusive else value < self.minimum):
            raise ConfigError(f"{key}={value}: must be {'>' if self.exclusive else '>='} {self.minimum}")
        if self.maximum is not None and (value >= self.maximum if self.below else value > self.maximum):
            raise ConfigError(f"{key}={value}: must be {'<' if self.below else '<='} {self.maximum}")
        return float(value)


class Boolean(Check):
    bad = ("maybe", 2)

    def describe(self) -> str:
        return "must be True or False"

    def check(self, value, key):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        return value


class Choice(Check):
    def __init__(self, *choices, hint: str = ""):
        self.choices, self.hint = tuple(choices), hint
        self.optional = None in self.choices
        self.bad = ("no-such-choice",)

    def describe(self) -> str:
        return f"choose one of {self.choices}" + (f" {self.hint}" if self.hint else "")

    def __call__(self, value, key):
        if value not in self.choices:
            raise ConfigError(f"{key}={value!r}; {self.describe()}")
        return value


class Text(Check):
    """A non-empty string (a path, a name)."""

    def __init__(self, optional: bool = False, what: str = "a non-empty string"):
        self.optional, self.what = optional, what
        self.bad = (123,)

    def describe(self) -> str:
        return f"must be {self.what}" + (" or None" if self.optional else "")

    def check(self, value, key):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        return value


class Texts(Check):
    """A non-empty string or a non-empty list of them (kept as given: a string stays a string)."""

    def __init__(self, optional: bool = False, what: str = "a path or a list of paths"):
        self.optional, self.what = optional, what
        self.bad = (123, [])

    def describe(self) -> str:
        return f"must be {self.what}" + (" or None" if self.optional else "")

    def check(self, value, key):
        if isinstance(value, (str, os.PathLike)):
            return Text(what=self.what)(value, key)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, os.PathLike)) and str(v)
                                                              for v in value):
            return [os.fspath(v) for v in value]
        raise ConfigError(f"{key}={value!r}: {self.describe()}")


class Mapping(Check):
    """A dict (model architecture keywords, the screening rule); its entries are checked where it is used."""

    def __init__(self, optional: bool = True, what: str = "a dict"):
        self.optional, self.what = optional, what
        self.bad = (5, "abc")

    def describe(self) -> str:
        return f"must be {self.what}" + (" or None" if self.optional else "")

    def check(self, value, key):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        return plain(value)


class OneOf(Check):
    """Any of several checks (e.g. None, "auto" or a number)."""

    def __init__(self, *checks: Check, what: str):
        self.checks, self.what = checks, what
        self.optional = any(c.optional for c in checks)
        self.bad = ("no-such-value", [])

    def describe(self) -> str:
        return f"must be {self.what}"

    def __call__(self, value, key):
        for check in self.checks:
            try:
                return check(value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}={value!r}: {self.describe()}")


def plain(value):
    """mmengine's ConfigDict / lists / tuples as plain JSON-able dicts and lists (``_delete_`` markers dropped)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if k != "_delete_"}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def setting(check: Check, resume: bool = True):
    """A settings field: its value check, and whether a resumed run must keep its value."""
    return dataclasses.field(metadata=dict(check=check, resume=resume))


# ------------------------------------------------------------------------------------------------ the base class


@functools.lru_cache(maxsize=16)
def shipped_values(schema: str) -> Dict[str, Any]:
    """The values of a shipped config (the defaults of the keys a user config leaves out)."""
    return {k: v for k, v in Config.fromfile(schema).items() if not k.startswith("_")}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the scripts' settings: built by :meth:`from_config`, frozen, JSON-able (:meth:`to_dict`)."""

    SCHEMA: ClassVar[str] = ""  # the shipped config (file name in configs/) whose keys are this class's fields

    @classmethod
    def schema_path(cls) -> str:
        return os.path.join(REPO_CONFIGS, cls.SCHEMA)

    @classmethod
    def from_config(cls, cfg, **overrides) -> "Settings":
        """The checked settings of ``cfg`` (an mmengine Config or a dict): each field's value checked and cast in
        field order, the shipped config's value where ``cfg`` has none; ``overrides`` replace config values. A key
        that is no field is refused with the closest one."""
        from textssr.config.loading import unknown_key_error
        given = {k: v for k, v in dict(cfg.items() if hasattr(cfg, "items") else cfg).items() if not k.startswith("_")}
        given.update(overrides)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in given:
            if key not in names:
                raise unknown_key_error(key, names, f"the {cls.__name__} config")
        defaults = shipped_values(cls.schema_path())
        values = {}
        for f in dataclasses.fields(cls):
            value = given[f.name] if f.name in given else defaults.get(f.name)
            values[f.name] = f.metadata["check"](plain(value), f.name)
        return cls(**values)

    @classmethod
    def load(cls, path: str, options: Optional[dict] = None, **overrides) -> "Settings":
        """The settings of the config file ``path`` with ``options`` (as ``--cfg-options`` gives them) applied."""
        from textssr.config.loading import load_config
        return cls.from_config(load_config(str(path), options, schema=cls.schema_path()), **overrides)

    @classmethod
    def parse(cls, argv: Optional[Sequence[str]], description: str, default_config: str) -> "Settings":
        """The settings a script's command line (``--config``, ``--cfg-options``) gives."""
        from textssr.config.loading import parse_config
        return cls.from_config(parse_config(argv, description=description, default_config=default_config,
                                            schema=cls.schema_path()))

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def resume_keys(cls) -> Tuple[str, ...]:
        """The fields a resumed run must keep (the resume rule)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["resume"])

    def write(self, folder: str, name: str = SETTINGS_FILE) -> str:
        """Record these settings in ``folder`` as data (JSON; read back by
        :func:`textssr.config.run_config.read_run_config`)."""
        path = os.path.join(folder, name)
        write_json(dict(self.to_dict(), _settings=type(self).__name__), path, indent=2)
        return path


def require_settings(obj, cls, where: str) -> None:
    """Library entry points take settings, never a raw config: a TypeError naming how to build them."""
    if not isinstance(obj, cls):
        raise TypeError(f"{where}() takes {cls.__name__}, not {type(obj).__name__}: build it with "
                        f"{cls.__name__}.from_config(cfg) or {cls.__name__}.load(path, options)")


def field_checks(cls) -> Dict[str, Check]:
    return {f.name: f.metadata["check"] for f in dataclasses.fields(cls)}


def names(cls) -> Sequence[str]:
    return [f.name for f in dataclasses.fields(cls)]
