"""train_str.py's settings (configs/str/train_str_cfg.py), checked and cast once at start-up
(textssr.config.settings); the data sources and OpenOCR files are checked by :func:`textssr.str.openocr_glue.check_config`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from textssr.config.settings import Boolean, Check, Choice, Integer, Mapping, Number, Settings, Text, setting
from textssr.config import ConfigError
from textssr.str.protocol import BENCHMARKS

AUGMENTS = (None, "SVTRAug", "ABINetAug", "PARSeqAug")  # OpenOCR ops on numpy images (PARSeqAug needs imgaug)


class Sources(Check):
    """A non-empty list of STR LMDB sources (paths, ``PATH:RATIO`` strings or ``dict(path=..., ratio=...)``)."""
    bad = (5, [])

    def describe(self) -> str:
        return "must be a non-empty list of STR LMDBs, e.g. [output/textssr_f/lmdb, data/str/real:0.5]"

    def check(self, value, key):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        return list(value)


class Presets(Check):
    """A list (maybe empty) of benchmark presets (textssr.str.protocol.BENCHMARKS)."""
    bad = (5, ["no-such-benchmark"])

    def describe(self) -> str:
        return f"must be a list of benchmark presets from {sorted(BENCHMARKS)} (maybe empty)"

    def check(self, value, key):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or any(v not in BENCHMARKS for v in value):
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        return list(value)


@dataclass(frozen=True)
class StrSettings(Settings):
    """configs/str/train_str_cfg.py (documented there)."""
    SCHEMA = "str/train_str_cfg.py"
    openocr_config: str = setting(Text(what="an OpenOCR recognition config (.yml)"))
    train_data: list = setting(Sources())
    test_data: Optional[dict] = setting(Mapping(what="a dict of name: STR LMDB path"))
    test_benchmarks: list = setting(Presets())
    benchmark_root: str = setting(Text(what="a folder path"))
    val_data: Optional[str] = setting(Text(optional=True, what="an STR LMDB path"))
    eval_step: Optional[int] = setting(Integer(1, optional=True))
    output_dir: str = setting(Text(what="a folder path"))
    device: str = setting(Choice("gpu", "cpu"))
    epoch_num: int = setting(Integer(1))
    samples_per_epoch: Optional[int] = setting(Integer(1, optional=True))
    batch_size: int = setting(Integer(1))
    eval_batch_size: int = setting(Integer(1))
    learning_rate: float = setting(Number(0, exclusive=True))
    lr_scaling: str = setting(Choice("none", "linear"))
    lr_reference_batch: int = setting(Integer(1))
    num_workers: int = setting(Integer(0))
    torch_threads: Optional[int] = setting(Integer(1, optional=True))
    use_amp: bool = setting(Boolean())
    seed: int = setting(Integer(0))
    augment: Optional[str] = setting(Choice(*AUGMENTS))
    character_dict: str = setting(Text(what="a character-dictionary file"))
    max_text_length: int = setting(Integer(1))
    use_space_char: bool = setting(Boolean())
    print_batch_step: int = setting(Integer(1))
    openocr_options: Optional[dict] = setting(Mapping(what="a dict of OpenOCR config sections"))
    ddp_timeout: float = setting(Number(0, exclusive=True), resume=False)
