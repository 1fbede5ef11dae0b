"""Training data: the AnyWord-lmdb dataset(s) of a stage and a rank-sharded, epoch-seeded loader.

The loader is deliberately a plain ``DataLoader`` over a ``DistributedSampler`` (not accelerate-prepared): the
order of an epoch is a pure function of (``seed``, epoch, rank), so a resumed run skips exactly the batches it
already consumed (``accelerator.skip_first_batches``) and each rank reads different samples.
"""
from __future__ import annotations

import bisect
import functools
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler


def lmdb_paths(lmdb_path: Union[str, Sequence[str]]) -> List[str]:
    """``lmdb_path`` as a list (the config may give one path or several)."""
    return [lmdb_path] if isinstance(lmdb_path, str) else [str(p) for p in lmdb_path]


def build_dataset(cfg, vae_mode: bool) -> Dataset:
    """One AnyWordLmdbDataset per ``cfg.lmdb_path`` entry, concatenated when there are several."""
    from textssr.data import AnyWordLmdbDataset
    parts = [AnyWordLmdbDataset(path, seed=cfg.seed, resolution=cfg.resolution, ttf_size=cfg.ttf_size,
                                max_len=cfg.max_len, language=cfg.language, font_path=cfg.font_path,
                                vae_mode=vae_mode, strict=cfg.strict, region_placement=cfg.region_placement)
             for path in lmdb_paths(cfg.lmdb_path)]
    return parts[0] if len(parts) == 1 else IndexedConcat(parts)


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

    def mark_bad(self, found: Dict[int, str]) -> None:
        for index, reason in found.items():
            part, offset = self._part(int(index))
            self.datasets[part].mark_bad({int(index) - offset: reason})

    @property
    def skip_counts(self) -> Counter:
        return sum((Counter(part.skip_counts) for part in self.datasets), Counter())


def set_dataset_epoch(dataset: Dataset, epoch: int) -> None:
    """Forward ``epoch`` to the dataset(s) so that their random region placement differs per epoch."""
    for part in getattr(dataset, "datasets", [dataset]):
        part.set_epoch(epoch)


def build_loader(dataset: Dataset, cfg, num_processes: int, process_index: int) -> DataLoader:
    """Shuffled, sharded by rank, ``drop_last`` loader; call ``loader.sampler.set_epoch(e)`` before each epoch."""
    from textssr.data import collate
    sampler = DistributedSampler(dataset, num_replicas=num_processes, rank=process_index, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    nice = int(cfg.get("dataloader_worker_nice") or 0)
    return DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=cfg.dataloader_num_workers, drop_last=True,
                      pin_memory=torch.cuda.is_available(), worker_init_fn=functools.partial(_lower_priority, nice))


def _lower_priority(nice: int, worker_id: int) -> None:
    """DataLoader worker start-up: run ``nice`` levels below the training process, so that on a machine with few
    cores the kernel gives the cores to the compute threads first and the workers use what they leave."""
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a collated batch to ``device`` (strings and dicts stay)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


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
        from accelerate.utils import gather_object
        merged: Dict[int, str] = {}
        for instances in gather_object([self.instances]):
            merged.update(instances)
        self.instances.update(merged)
        return dict(sorted(Counter(merged.values()).items())), dict(sorted(merged.items()))
