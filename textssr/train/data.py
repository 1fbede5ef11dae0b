"""Training data: the AnyWord-lmdb dataset(s) of a stage and a rank-sharded, epoch-seeded loader.

The loader is deliberately a plain ``DataLoader`` over a ``DistributedSampler`` (not accelerate-prepared): the
order of an epoch is a pure function of (``seed``, epoch, rank), so a resumed run skips exactly the batches it
already consumed (``accelerator.skip_first_batches``) and each rank reads different samples.
"""
from __future__ import annotations

import functools
import os
from typing import List, Sequence, Union

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from textssr.data import collate
from textssr.data.factory import dataset_options, open_dataset
from textssr.runtime.distributed import use_cpu


def lmdb_paths(lmdb_path: Union[str, Sequence[str]]) -> List[str]:
    """``lmdb_path`` as a list (the config may give one path or several)."""
    return [lmdb_path] if isinstance(lmdb_path, str) else [str(p) for p in lmdb_path]


def build_dataset(cfg, vae_mode: bool) -> Dataset:
    """One AnyWordLmdbDataset per ``cfg.lmdb_path`` entry, concatenated when there are several."""
    return open_dataset(lmdb_paths(cfg.lmdb_path), **dataset_options(cfg, vae_mode=vae_mode))


class RankPartitionSampler(DistributedSampler):
    """A shuffled, ``drop_last`` sampler whose ranks keep the same samples every epoch: rank ``r`` of ``N`` owns the
    indices ``i ≡ r (mod N)`` (the first ``len // N`` of them) and reads them in a new order each epoch (seeded by
    ``seed + epoch``). For the latent cache, which is per rank: with DistributedSampler's reshuffle across ranks a
    rank would meet mostly samples another rank has cached (1/N hits from epoch 2 on) and each cache would grow
    toward the whole set. With one process it reads exactly DistributedSampler's order."""

    def __iter__(self):
        owned = torch.arange(self.rank, len(self.dataset), self.num_replicas)[: self.num_samples]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(owned[torch.randperm(len(owned), generator=generator)].tolist())


def build_loader(dataset: Dataset, cfg, num_processes: int, process_index: int) -> DataLoader:
    """Shuffled, sharded by rank, ``drop_last`` loader; call ``loader.sampler.set_epoch(e)`` before each epoch.
    With the latent cache (``latent_cache``) each rank keeps its share of the samples (:class:`RankPartitionSampler`)."""
    sampler_cls = RankPartitionSampler if getattr(cfg, "latent_cache", False) else DistributedSampler
    sampler = sampler_cls(dataset, num_replicas=num_processes, rank=process_index, shuffle=True, seed=cfg.seed,
                          drop_last=True)
    nice = int(cfg.dataloader_worker_nice)
    return DataLoader(dataset, batch_size=cfg.train_batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=cfg.dataloader_num_workers, drop_last=True,
                      pin_memory=not use_cpu(), worker_init_fn=functools.partial(_lower_priority, nice))


def _lower_priority(nice: int, worker_id: int) -> None:
    """DataLoader worker start-up: run ``nice`` levels below the training process, so that on a machine with few
    cores the kernel gives the cores to the compute threads first and the workers use what they leave."""
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)


CPU_KEYS = ("index",)  # bookkeeping read on the host (the latent cache's keys): moving it would cost a sync


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a collated batch to ``device`` (strings, dicts and ``CPU_KEYS`` stay)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) and k not in CPU_KEYS else v
            for k, v in batch.items()}
