"""synthesize.py's settings: the sampling ones (textssr.generation.settings) and TextSSR-F's own
(configs/synth_cfg.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Union

from textssr.config import ConfigError
from textssr.config.settings import Boolean, Check, Choice, Integer, Mapping, Number, Text, Texts, setting
from textssr.generation.settings import SamplingSettings
from textssr.synth.anagram import LEXICON_SAMPLINGS, TEXT_SOURCES, UNPERMUTABLE_POLICIES
from textssr.synth.str_lmdb import IMAGE_FORMATS

DETECTION_MODES = ("auto", "beside", "first")  # photos: textssr.synth.regions.detect_beside


class Pattern(Check):
    """A regular expression (Python ``re``) a whole text must match, or None."""

    def __init__(self):
        self.optional = True
        self.bad = (5, "[A-Z")

    def describe(self) -> str:
        return "must be a regular expression such as '[A-Za-z0-9]+', or None"

    def check(self, value, key):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}={value!r}: {self.describe()}")
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{key}={value!r}: not a regular expression ({exc}); {self.describe()}") from None
        return value


@dataclass(frozen=True)
class SynthSettings(SamplingSettings):
    """configs/synth_cfg.py: regions, target texts, screening, output."""
    SCHEMA = "synth_cfg.py"
    source: str = setting(Text(what="an AnyWord JSON, a benchmark folder, an AnyWord-lmdb folder, a folder of "
                                    "ICDAR gt_*.txt annotations or a folder of photos"))
    max_regions: Optional[int] = setting(Integer(1, optional=True))
    min_line_confidence: float = setting(Number(0, 1))
    min_line_height: int = setting(Integer(1))
    min_line_aspect: float = setting(Number(0))
    max_line_aspect: Optional[float] = setting(Number(0, exclusive=True, optional=True))
    max_line_angle: float = setting(Number(0, 90))
    line_chars: Optional[str] = setting(Pattern())
    min_photo_side: int = setting(Integer(1))
    max_photo_pixels: int = setting(Integer(1))
    detections_dir: Optional[str] = setting(Text(optional=True, what="a folder path"), resume=False)
    variants_per_region: int = setting(Integer(1))
    text_source: str = setting(Choice(*TEXT_SOURCES))
    lexicon: Union[None, str, List[str]] = setting(Texts(optional=True, what="a word-list file or a list of words"))
    lexicon_sampling: str = setting(Choice(*LEXICON_SAMPLINGS))
    anagram_ratio: float = setting(Number(0, 1))
    unpermutable: str = setting(Choice(*UNPERMUTABLE_POLICIES))
    screening: Optional[dict] = setting(Mapping(what="a dict of screening rule keys (match, min_ned, ...)"))
    image_format: str = setting(Choice(*IMAGE_FORMATS))
    jpeg_quality: int = setting(Integer(1))
    keep_shards: bool = setting(Boolean(), resume=False)
    contact_sheet_size: int = setting(Integer(0), resume=False)
    poll_seconds: float = setting(Number(0, exclusive=True), resume=False)
    overlap: bool = setting(Boolean(), resume=False)
    detection: str = setting(Choice(*DETECTION_MODES), resume=False)
