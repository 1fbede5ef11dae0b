"""Training data: the AnyWord-lmdb dataset(s) of a stage and a rank-sharded, epoch-seeded loader.

The loader is deliberately a plain ``DataLoader`` over a ``DistributedSampler`` (not accelerate-prepared): the
order of an epoch is a pure function of (``seed``, epoch, rank), so a resumed run skips exactly the batches it
already consumed (``accelerator.skip_first_batches``) and each rank reads different samples.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence, Union

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
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def set_dataset_epoch(dataset: Dataset, epoch: int) -> None:
    """Forward ``epoch`` to the dataset(s) so that their random region placement differs per epoch."""
    for part in getattr(dataset, "datasets", [dataset]):
        part.set_epoch(epoch)


def build_loader(dataset: Dataset, cfg, num_processes: int, process_index: int) -> DataLoader:
    """Shuffled, sharded by rank, ``drop_last`` loader; call ``loader.sampler.set_epoch(e)`` before each epoch."""
    from textssr.data import collate
    sampler = DistributedSampler(dataset, num_replicas=num_processes, rank=process_index, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    return DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=cfg.dataloader_num_workers, drop_last=True,
                      pin_memory=torch.cuda.is_available())


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a collated batch to ``device`` (strings and dicts stay)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class SkipCounter:
    """Skipped-sample reasons summed over the batches of one rank: {reason: count}."""

    def __init__(self, initial: Dict[str, int] = None):
        self.counts = Counter(initial or {})

    def add(self, batch: dict) -> None:
        self.counts.update(batch.get("skipped") or {})

    def total(self, accelerator) -> Dict[str, int]:
        """The counts summed over all ranks (a collective: every rank must call it)."""
        from accelerate.utils import gather_object
        merged = Counter()
        for counts in gather_object([dict(self.counts)]):
            merged.update(counts)
        return dict(sorted(merged.items()))
