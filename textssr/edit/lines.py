"""Pick the text line of a photo that reads a given word (the lines come from :mod:`textssr.eval.lines`, the
PP-OCRv4 detector synthesis from photos uses too).

A line "reads" OLD when the NED (1 − edit distance / longer length, case folded) between its
reading and OLD is at least :data:`MIN_NED`; the best such line wins (ties: the more confident reading).
"""
from __future__ import annotations

from typing import List

from textssr.config import ConfigError
from textssr.edit.region import polygon_arg
from textssr.eval.lines import LineFinder, TextLine  # noqa: F401  (edit's users import them from here)
from textssr.eval.metrics import ned

MIN_NED = 0.5  # a reading at least half right: "Genexis Theatre" reads "Genaxis Theatre" (0.93), "Rotn" does not
LISTED = 8  # readings named in the error when nothing matches


def match_score(reading: str, word: str) -> float:
    """NED of ``reading`` against ``word``, case folded, in [0, 1]."""
    return ned(reading.casefold(), word.casefold())


def best_line(lines: List[TextLine], word: str, where: str = "photo") -> TextLine:
    """The line that reads ``word`` best; a one-line ConfigError listing what was read when none reaches
    MIN_NED."""
    if not word.strip():
        raise ConfigError("--find: the word to find is empty; give the text the photo shows, e.g. --find EXIT")
    if not lines:
        raise ConfigError(f"no text line found in {where}, so none reads {word!r}; give the region with --polygon")
    ranked = sorted(lines, key=lambda line: (match_score(line.text, word), line.confidence), reverse=True)
    if match_score(ranked[0].text, word) >= MIN_NED:
        return ranked[0]
    read = ", ".join(f"{line.text!r} {match_score(line.text, word):.2f}" for line in ranked[:LISTED])
    more = f", ... {len(ranked) - LISTED} more" if len(ranked) > LISTED else ""
    raise ConfigError(f"no text line of {where} reads {word!r} (NED >= {MIN_NED} needed; read: {read}{more}); "
                      "give another word or the region with --polygon")


def describe(line: TextLine) -> str:
    """One line of ``edit.py --list``: reading, confidence, polygon as ``--polygon`` takes it."""
    return f"{line.text!r}\t{line.confidence:.2f}\t{polygon_arg(line.polygon)}"
