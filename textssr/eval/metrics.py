"""Recognition scores for generated text: sentence accuracy (Sen.ACC) and normalised edit distance (NED).

The field's convention (AnyText, TextSSR): a crop is read by an OCR model and compared with the text
it was asked to show. Sen.ACC is the fraction of exact matches; NED is
1 − edit_distance / max(len(pred), len(target)), averaged over items. Both count Unicode code points
(a CJK character is one unit, never its UTF-8 bytes). Because an item's NED is 1 exactly when it
matches and in [0, 1) otherwise, the mean NED is never below Sen.ACC.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

SCORE_KEYS = ("num", "sen_acc", "ned", "sen_acc_case_insensitive", "ned_case_insensitive")


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (unit-cost insert, delete, substitute) between two sequences of characters."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1,  # delete ca
                               current[j - 1] + 1,  # insert cb
                               previous[j - 1] + (ca != cb)))  # substitute (free when equal)
        previous = current
    return previous[-1]


def ned(pred: str, gt: str) -> float:
    """1 − edit_distance / max(len(pred), len(gt)), in [0, 1]; 1.0 when both are empty."""
    longest = max(len(pred), len(gt))
    if longest == 0:
        return 1.0
    return 1.0 - edit_distance(pred, gt) / longest


def score(preds: Sequence[str], gts: Sequence[str]) -> Dict[str, Optional[float]]:
    """``{num, sen_acc, ned, sen_acc_case_insensitive, ned_case_insensitive}`` of OCR readings ``preds`` against
    target texts ``gts`` (paired in order): scores in [0, 1], None when ``num`` is 0; case-insensitive ones compare
    ``str.lower()`` of both."""
    if len(preds) != len(gts):
        raise ValueError(f"score: {len(preds)} predictions for {len(gts)} targets — they must pair up one to one")
    result: Dict[str, Optional[float]] = {"num": len(gts)}
    for suffix, fold in (("", str), ("_case_insensitive", str.lower)):
        pairs = [(fold(p), fold(g)) for p, g in zip(preds, gts)]
        if not pairs:
            result["sen_acc" + suffix] = result["ned" + suffix] = None
            continue
        # fsum is exactly rounded, so sum(ned) >= number of matches survives floating point.
        sen_acc = math.fsum(float(p == g) for p, g in pairs) / len(pairs)
        mean_ned = math.fsum(ned(p, g) for p, g in pairs) / len(pairs)
        assert mean_ned >= sen_acc, f"NED {mean_ned} < Sen.ACC {sen_acc}: the metric code is broken"
        result["sen_acc" + suffix] = sen_acc
        result["ned" + suffix] = mean_ned
    return result
