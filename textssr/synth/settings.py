"""synthesize.py's settings: the sampling ones (textssr.generation.settings) and TextSSR-F's own
(configs/synth_cfg.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

from textssr.config.settings import Boolean, Choice, Integer, Mapping, Number, Text, Texts, setting
from textssr.generation.settings import SamplingSettings
from textssr.synth.anagram import TEXT_SOURCES, UNPERMUTABLE_POLICIES
from textssr.synth.str_lmdb import IMAGE_FORMATS


@dataclass(frozen=True)
class SynthSettings(SamplingSettings):
    """configs/synth_cfg.py: regions, target texts, screening, output."""
    SCHEMA = "synth_cfg.py"
    source: str = setting(Text(what="an AnyWord JSON, a benchmark folder or an AnyWord-lmdb folder"))
    max_regions: Optional[int] = setting(Integer(1, optional=True))
    variants_per_region: int = setting(Integer(1))
    text_source: str = setting(Choice(*TEXT_SOURCES))
    lexicon: Union[None, str, List[str]] = setting(Texts(optional=True, what="a word-list file or a list of words"))
    anagram_ratio: float = setting(Number(0, 1))
    unpermutable: str = setting(Choice(*UNPERMUTABLE_POLICIES))
    screening: Optional[dict] = setting(Mapping(what="a dict of screening rule keys (match, min_ned, ...)"))
    image_format: str = setting(Choice(*IMAGE_FORMATS))
    jpeg_quality: int = setting(Integer(1))
    keep_shards: bool = setting(Boolean(), resume=False)
    contact_sheet_size: int = setting(Integer(0), resume=False)
    poll_seconds: float = setting(Number(0, exclusive=True), resume=False)
    overlap: bool = setting(Boolean(), resume=False)
