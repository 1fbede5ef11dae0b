"""Quality screening of synthesized crops: a recogniser reads each crop; a rule decides keep / reject.

The paper keeps only crops that recognisers read as their target text (its models and thresholds are
unpublished). Here the recogniser is PP-OCRv4 (``textssr.eval.ocr.Recognizer``) and the rule is configurable
(``screening`` in the synthesis config)::

    screening = dict(match="exact",        # "exact": normalised prediction == target; "ned": NED >= min_ned
                     min_ned=1.0,          # used when match == "ned"; 1.0 is the same as exact
                     min_confidence=0.0,   # reject below this recogniser confidence (0..1)
                     case_sensitive=False, # compare after casefold() when False
                     ignore_spaces=True)   # drop spaces from both sides before comparing
    screening = None                       # keep every crop, run no recogniser

Reject reasons (counted in stats.json), checked in this order, the first that applies counting: ``no_text``
(nothing read), ``low_confidence``, ``text_mismatch`` (exact rule), ``low_ned`` (NED rule).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from textssr.eval.metrics import ned

MATCH_RULES = ("exact", "ned")
REJECT_REASONS = ("no_text", "low_confidence", "text_mismatch", "low_ned")


@dataclass(frozen=True)
class ScreeningRule:
    match: str = "exact"
    min_ned: float = 1.0
    min_confidence: float = 0.0
    case_sensitive: bool = False
    ignore_spaces: bool = True

    def __post_init__(self):
        if self.match not in MATCH_RULES:
            raise ValueError(f"screening.match={self.match!r}; choose one of {MATCH_RULES}")
        for key in ("min_ned", "min_confidence"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"screening.{key}={value!r}: must be a number in [0, 1]")
        for key in ("case_sensitive", "ignore_spaces"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"screening.{key}={getattr(self, key)!r}: must be True or False")

    def normalise(self, text: str) -> str:
        text = text.strip()
        if self.ignore_spaces:
            text = "".join(text.split())
        return text if self.case_sensitive else text.casefold()


def screen_decision(target: str, predicted: str, confidence: float, rule: ScreeningRule) -> Optional[str]:
    """None to keep the crop, else the reject reason (one of REJECT_REASONS)."""
    pred, want = rule.normalise(predicted), rule.normalise(target)
    if not pred:
        return "no_text"
    if confidence < rule.min_confidence:
        return "low_confidence"
    if rule.match == "exact":
        return None if pred == want else "text_mismatch"
    return None if ned(pred, want) >= rule.min_ned else "low_ned"


class Screener:
    """PP-OCRv4 recognition + a :class:`ScreeningRule` over batches of crops."""

    def __init__(self, rule: ScreeningRule, recognizer=None):
        if recognizer is None:
            from textssr.eval.ocr import Recognizer  # lazy: onnxruntime loads only when screening is on
            recognizer = Recognizer()
        self.rule, self.recognizer = rule, recognizer

    def screen(self, crops: Sequence[np.ndarray], targets: Sequence[str]
               ) -> List[Tuple[Optional[str], str, float]]:
        """crops: RGB uint8 (H, W, 3) arrays. Returns one ``(reject_reason | None, read_text, confidence)`` each."""
        if not crops:
            return []
        reads = self.recognizer.recognize(list(crops))
        return [(screen_decision(t, text, float(conf), self.rule), text, float(conf))
                for t, (text, conf) in zip(targets, reads)]


def screening_rule(screening: Optional[dict]) -> Optional[ScreeningRule]:
    """The rule of a ``screening`` config value (None: screening off). Unknown keys are a ValueError."""
    if screening is None:
        return None
    if not isinstance(screening, dict):
        raise ValueError(f"screening={screening!r}: must be a dict (e.g. dict(match='exact')) or None")
    unknown = set(screening) - set(ScreeningRule.__dataclass_fields__)
    if unknown:
        raise ValueError(f"screening has unknown key(s) {sorted(unknown)}; "
                         f"allowed: {sorted(ScreeningRule.__dataclass_fields__)}")
    return ScreeningRule(**screening)


def build_screener(screening: Optional[dict]) -> Optional[Screener]:
    """None when screening is off; else a Screener (the recogniser is loaded here, once)."""
    rule = screening_rule(screening)
    return Screener(rule) if rule is not None else None
