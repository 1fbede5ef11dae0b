"""Bad instances counted once across processes: what a DataLoader worker, another rank, another part of a
concatenated dataset or a resumed run found bad is merged by dataset index, counted once and never built again.

:class:`SkipCounter` merges the ``skipped_instances`` of training batches (and of every rank, and of a checkpoint);
:class:`IndexedConcat` concatenates datasets so that sample indices, their ``skipped`` lists and the parts' skip
accounting (``mark_bad``, ``skip_counts``) use concatenated indices.
"""
from __future__ import annotations

import bisect
from collections import Counter
from typing import Dict, Optional, Tuple

from accelerate.utils import gather_object
from torch.utils.data import ConcatDataset


class SkipCounter:
    """The instances found bad while training, each counted once: {dataset index: reason}, merged over batches,
    epochs, DataLoader workers, ranks and resumes. What a worker found is also marked in this process's dataset,
    so the next epoch's workers pass over it without building it again."""

    def __init__(self, dataset, initial: Optional[Dict] = None):
        self.dataset = dataset
        self.instances: Dict[int, str] = {int(k): v for k, v in (initial or {}).items()}
        self.dataset.mark_bad(self.instances)

    def add(self, batch: dict) -> None:
        found = {int(i): r for i, r in (batch.get("skipped_instances") or {}).items() if int(i) not in self.instances}
        if found:
            self.instances.update(found)
            self.dataset.mark_bad(found)

    def total(self, accelerator) -> Tuple[Dict[str, int], Dict[int, str]]:
        """({reason: count}, {index: reason}) over all ranks (a collective: every rank must call it)."""
        merged: Dict[int, str] = {}
        for instances in gather_object([self.instances]):
            merged.update(instances)
        self.instances.update(merged)
        return dict(sorted(Counter(merged.values()).items())), dict(sorted(merged.items()))


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
