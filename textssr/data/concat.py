"""Datasets concatenated so that sample indices, their ``skipped`` lists and the parts' skip accounting
(``mark_bad``, ``skip_counts``) use concatenated indices: what one part found bad is counted once, by the index the
whole dataset gives it."""
from __future__ import annotations

import bisect
from collections import Counter
from typing import Dict, Tuple

from torch.utils.data import ConcatDataset


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

    @property
    def filtered(self) -> Counter:
        return sum((Counter(part.filtered) for part in self.datasets), Counter())
