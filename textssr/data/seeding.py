"""The one seeding rule: everything random about an item comes from a numpy ``SeedSequence`` of integers that name
the item (the run's seed first), never from a global RNG, so results do not depend on workers, ranks, batching
or resumes.

    dataset sample         item_rng(seed, epoch, index)
    infer instance         item_rng(seed, number, stream=0)              crop window
                           item_torch_generator(seed, number, stream=1)   initial latents, sampler noise
    synthesis item         item_rng(seed, region, variant)               text, crop window
                           item_torch_generator(seed, region, variant, 1, fold="shift")   latents, noise

A torch generator takes a 63-bit seed: the sequence's first 64-bit word with its top bit cleared (``fold="mask"``).
Synthesis was written with the word shifted right instead (``fold="shift"``); it keeps it, so that every set
built so far reproduces bit for bit.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

FOLDS = ("mask", "shift")


def item_seeds(*words: int, stream: Optional[int] = None) -> np.random.SeedSequence:
    """The seed sequence of the item named by ``words``; ``stream`` separates independent streams of one item
    (it is the sequence's spawn key, as ``SeedSequence(words).spawn(n)[stream]``)."""
    return np.random.SeedSequence([int(w) for w in words], spawn_key=() if stream is None else (int(stream),))


def item_rng(*words: int, stream: Optional[int] = None) -> np.random.Generator:
    return np.random.default_rng(item_seeds(*words, stream=stream))


def torch_seed(seeds: np.random.SeedSequence, fold: str = "mask") -> int:
    """A seed in torch's range from ``seeds``' first 64-bit word (see the module docstring for ``fold``)."""
    word = seeds.generate_state(1, np.uint64)[0]
    if fold == "mask":
        return int(word & np.uint64(2 ** 63 - 1))
    if fold == "shift":
        return int(word >> np.uint64(1))
    raise ValueError(f"fold={fold!r}; choose one of {FOLDS}")


def item_torch_generator(*words: int, stream: Optional[int] = None, fold: str = "mask") -> torch.Generator:
    """A CPU torch generator for the item named by ``words`` (initial latents, then per-step sampler noise)."""
    return torch.Generator().manual_seed(torch_seed(item_seeds(*words, stream=stream), fold))
