"""Bad instances counted once across processes: :class:`SkipCounter` merges the ``skipped_instances`` of training
batches (and of every rank, and of a checkpoint) by dataset index, so what a DataLoader worker, another rank or a
resumed run found bad is counted once and never built again (concatenated datasets: textssr.data.concat).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Optional, Tuple

from accelerate.utils import gather_object


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


