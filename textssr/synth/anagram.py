"""Target texts for TextSSR-F: anagrams of a region's own word, lexicon words, or a mix of both.

Rules (the paper's "anagram expansion", made precise):

- An **anagram** is a random permutation of the word's characters (Unicode code points, so CJK and Latin alike).
  **Spaces stay where they are**: "NEW YORK" can become "KYO WERN" but never "NEWYORK " — the word count and the
  gaps the region's layout was made for survive.
- The anagram **differs from the original whenever possible** (the non-space characters hold two distinct
  values). An *unpermutable* word (one character, "AAA", "A A") keeps its own text (``unpermutable="keep"``) or
  draws a lexicon word (``unpermutable="lexicon"``).
- A lexicon word is a uniform draw (``lexicon_sampling="random"``, the original's rule) or, to spread a small
  lexicon evenly (``"even"``), item ``k = region * variants_per_region + variant`` takes word ``k mod L`` of the
  ``k // L``-th shuffle of the ``L`` words: every word is used once before any word is used again.
- Every choice comes from a generator of ``(seed, region index, variant)`` alone (:func:`variant_rng`), or from the
  item number and the seed (``"even"``), so the texts do not depend on the number of processes, the batch size or
  where a run was resumed.
"""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from textssr.data.fonts import missing_chars
from textssr.data.seeding import item_rng
from textssr.data.skips import MISSING_GLYPH, text_problem

TEXT_SOURCES = ("anagram", "lexicon", "mix")
UNPERMUTABLE_POLICIES = ("keep", "lexicon")
LEXICON_SAMPLINGS = ("random", "even")
SHUFFLE_STREAM = 2  # extra SeedSequence word: the lexicon shuffles of "even", apart from any item's generator


def variant_rng(seed: int, region: int, variant: int) -> np.random.Generator:
    """The generator that decides everything random about one (region, variant) item."""
    return item_rng(seed, region, variant)


def is_permutable(text: str) -> bool:
    """True when some permutation of the non-space characters differs from ``text``."""
    return len(set(text.replace(" ", ""))) >= 2


def anagram(text: str, rng: np.random.Generator) -> str:
    """A random permutation of the non-space characters of ``text`` (spaces keep their positions), unlike ``text``
    whenever :func:`is_permutable`: a shuffle that gives the original back is fixed by swapping two positions that
    hold different characters, so one shuffle always suffices."""
    chars = list(text)
    slots = [i for i, c in enumerate(chars) if c != " "]
    moved = [chars[i] for i in slots]
    rng.shuffle(moved)
    if is_permutable(text) and moved == [chars[i] for i in slots]:
        i = int(rng.integers(len(moved)))
        others = [j for j, c in enumerate(moved) if c != moved[i]]
        j = others[int(rng.integers(len(others)))]
        moved[i], moved[j] = moved[j], moved[i]
    for slot, c in zip(slots, moved):
        chars[slot] = c
    return "".join(chars)


def load_lexicon(lexicon, max_len: int, font_path: Optional[str] = None) -> Tuple[Tuple[str, ...], Dict[str, str]]:
    """``(words, left_out)`` of a word list (a UTF-8 file, one word per line, or a sequence of strings): words
    stripped, empty lines skipped; words longer than ``max_len``, holding control characters or (with
    ``font_path``) characters the font lacks are left out, ``left_out`` says why {word: reason}. ValueError (with
    the fix) when nothing usable is left."""
    if isinstance(lexicon, (str, os.PathLike)):
        if not os.path.isfile(lexicon):
            raise ValueError(f"lexicon file not found: {lexicon} (one UTF-8 word per line)")
        try:
            with open(lexicon, encoding="utf-8-sig") as f:
                raw = f.read().splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"lexicon file {lexicon} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                             f"{exc.start}); save it as UTF-8, one word per line") from None
        except OSError as exc:
            raise ValueError(f"lexicon file {lexicon} cannot be read ({exc.strerror})") from None
    else:
        raw = [str(w) for w in lexicon]
    words, left_out = [], {}
    for word in (w.strip() for w in raw):
        why = word_problem(word, max_len, font_path) if word else None
        if why:
            left_out[word] = why
        elif word:
            words.append(word)
    if not words:
        raise ValueError(f"lexicon has no word of 1..{max_len} characters; give a non-empty word list")
    return tuple(words), left_out


def word_problem(word: str, max_len: int, font_path: Optional[str]) -> Optional[str]:
    """Why a lexicon word cannot be a target text (None: it can)."""
    if len(word) > max_len:
        return f"longer than max_len={max_len}"
    if text_problem(word) is not None:
        return "holds control characters"
    lacking = missing_chars(word, font_path) if font_path else ""
    if lacking:
        return f"{MISSING_GLYPH}: {''.join(lacking)!r} not in {os.path.basename(str(font_path))}"
    return None


@dataclass(frozen=True)
class TextSource:
    """Chooses the target text of each (region, variant). kind: "anagram" (permute the region's word), "lexicon"
    (a uniform draw from ``lexicon``), "mix" (anagram with probability ``anagram_ratio``, else a lexicon word);
    unpermutable: what an anagram of an unpermutable word becomes — "keep" its text or a "lexicon" word."""

    kind: str = "anagram"
    lexicon: Tuple[str, ...] = ()
    anagram_ratio: float = 0.5
    unpermutable: str = "keep"
    sampling: str = "random"
    seed: int = 0

    def __post_init__(self):
        if self.kind not in TEXT_SOURCES:
            raise ValueError(f"text_source={self.kind!r}; choose one of {TEXT_SOURCES}")
        if self.unpermutable not in UNPERMUTABLE_POLICIES:
            raise ValueError(f"unpermutable={self.unpermutable!r}; choose one of {UNPERMUTABLE_POLICIES}")
        needs_lexicon = self.kind != "anagram" or self.unpermutable == "lexicon"
        if needs_lexicon and not self.lexicon:
            raise ValueError(f"text_source={self.kind!r} with unpermutable={self.unpermutable!r} needs a "
                             "lexicon: set `lexicon` to a word-list file or a list of words")
        if self.sampling not in LEXICON_SAMPLINGS:
            raise ValueError(f"lexicon_sampling={self.sampling!r}; choose one of {LEXICON_SAMPLINGS}")
        if not 0.0 <= self.anagram_ratio <= 1.0:
            raise ValueError(f"anagram_ratio={self.anagram_ratio}; must lie in [0, 1]")

    def text_for(self, original: str, rng: np.random.Generator, item: int = 0) -> Tuple[str, str]:
        """Return ``(text, how)``; ``how`` is "anagram", "kept" (unpermutable, kept) or "lexicon". ``item``: the
        item's number in the run (``"even"`` sampling)."""
        use_anagram = self.kind == "anagram" or (self.kind == "mix" and rng.random() < self.anagram_ratio)
        if use_anagram:
            if is_permutable(original):
                return anagram(original, rng), "anagram"
            if self.unpermutable == "keep":
                return original, "kept"
        if self.sampling == "even":
            return self.lexicon[self.shuffle(item // len(self.lexicon))[item % len(self.lexicon)]], "lexicon"
        return self.lexicon[int(rng.integers(len(self.lexicon)))], "lexicon"

    def shuffle(self, cycle: int) -> np.ndarray:
        """The word order of one round of ``"even"`` sampling: a permutation of the lexicon's indices."""
        return lexicon_shuffle(self.seed, len(self.lexicon), cycle)


@functools.lru_cache(maxsize=4)
def lexicon_shuffle(seed: int, size: int, cycle: int) -> np.ndarray:
    """Round ``cycle`` of ``"even"`` sampling over ``size`` words, drawn once per round (not once per item: a
    round serves ``size`` consecutive items, and a large lexicon's permutation is not free). Read-only."""
    order = item_rng(seed, SHUFFLE_STREAM, cycle).permutation(size)
    order.flags.writeable = False
    return order


def report_left_out(left_out: Dict[str, str], file=None) -> None:
    """One line per lexicon word left out, with why (stderr)."""
    for word, why in left_out.items():
        print(f"lexicon word {word!r} left out: {why}", file=file or sys.stderr)


def build_text_source(kind: str, lexicon: Optional[Sequence[str]] = None, anagram_ratio: float = 0.5,
                      unpermutable: str = "keep", max_len: int = 25, font_path: Optional[str] = None,
                      sampling: str = "random", seed: int = 0) -> Tuple[TextSource, Dict[str, str]]:
    """A :class:`TextSource` from config values; returns it with the lexicon words left out {word: reason}."""
    words, left_out = load_lexicon(lexicon, max_len, font_path) if lexicon else ((), {})
    return TextSource(kind, words, float(anagram_ratio), unpermutable, sampling, int(seed)), left_out
