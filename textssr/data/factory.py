"""One way to open data: an AnyWord JSON, a benchmark folder (its ``test.json``), an AnyWord-lmdb folder tree, or a
list of them (concatenated), with the dataset keywords taken from a config."""
from __future__ import annotations

import bisect
import os
from collections import Counter
from typing import Dict, Optional, Sequence, Tuple, Union

from torch.utils.data import ConcatDataset

from textssr.data.anyword import AnyWordBase, AnyWordDataset
from textssr.data.lmdb_store import AnyWordLmdbDataset

BENCH_FILE = "test.json"  # the AnyWord JSON of a benchmark folder (the published TextSSR-benchmark layout)


def anyword_json(source: str) -> Optional[str]:
    """The AnyWord JSON that ``source`` names (the file, or a folder's test.json); None for anything else."""
    if os.path.isfile(source):
        return source
    bench = os.path.join(source, BENCH_FILE)
    return bench if os.path.isfile(bench) else None


def dataset_options(cfg, vae_mode: bool = False, placement: str = "random", **sizes) -> dict:
    """The dataset keywords of a config (``placement``: the region placement when it names none), with ``sizes``
    (resolution, ttf_size, max_len) as the caller resolved them, else the config's."""
    options = dict(seed=int(cfg.seed), language=cfg.get("language"), font_path=cfg.font_path, vae_mode=vae_mode,
                   strict=bool(cfg.get("strict", False)), region_placement=cfg.get("region_placement") or placement)
    for key in ("resolution", "ttf_size", "max_len"):
        options[key] = sizes[key] if key in sizes else cfg[key]
    return options


def open_dataset(source: Union[str, Sequence[str]], **options) -> AnyWordBase:
    """The dataset of ``source`` (see the module docstring); ``options``: the dataset keywords."""
    if not isinstance(source, (str, os.PathLike)):
        parts = [open_dataset(str(s), **options) for s in source]
        return parts[0] if len(parts) == 1 else IndexedConcat(parts)
    json_path = anyword_json(str(source))
    return AnyWordDataset(json_path, **options) if json_path else AnyWordLmdbDataset(str(source), **options)


class IndexedConcat(ConcatDataset):
    """ConcatDataset whose samples' ``index`` and ``skipped`` indices are concatenated indices (unique across the
    parts), with the parts' skip accounting (``mark_bad``, ``skip_counts``) seen through it."""

    def _part(self, index: int) -> Tuple[int, int]:
        part = bisect.bisect_right(self.cumulative_sizes, index)
        return part, self.cumulative_sizes[part - 1] if part else 0

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        _, offset = self._part(index)
        if offset:
            sample["index"] += offset
            if "skipped" in sample:
                sample["skipped"] = [(i + offset, reason) for i, reason in sample["skipped"]]
        return sample

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            part.set_epoch(epoch)

    def mark_bad(self, found: Dict[int, str]) -> None:
        for index, reason in found.items():
            part, offset = self._part(int(index))
            self.datasets[part].mark_bad({int(index) - offset: reason})

    @property
    def skip_counts(self) -> Counter:
        return sum((Counter(part.skip_counts) for part in self.datasets), Counter())
