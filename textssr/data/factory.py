"""One way to open data: an AnyWord JSON, a benchmark folder (its ``test.json``), an AnyWord-lmdb folder tree, or a
list of them (concatenated), with the dataset keywords taken from a config."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

from textssr.data.anyword import AnyWordBase, AnyWordDataset
from textssr.data.lmdb_store import AnyWordLmdbDataset
from textssr.data.concat import IndexedConcat

BENCH_FILE = "test.json"  # the AnyWord JSON of a benchmark folder (the published TextSSR-benchmark layout)


def anyword_json(source: str) -> Optional[str]:
    """The AnyWord JSON that ``source`` names (the file, or a folder's test.json); None for anything else."""
    if os.path.isfile(source):
        return source
    bench = os.path.join(source, BENCH_FILE)
    return bench if os.path.isfile(bench) else None


def dataset_options(settings, **overrides) -> dict:
    """The dataset keywords a script's settings give (seed, language, font, strictness, region placement, sizes),
    with ``overrides`` (``vae_mode``, sizes as the caller resolved them, ``allow_images_outside_root``)."""
    options = dict(seed=settings.seed, language=settings.language, font_path=settings.font_path,
                   strict=settings.strict, region_placement=settings.region_placement,
                   resolution=settings.resolution, ttf_size=settings.ttf_size, max_len=settings.max_len)
    options.update(overrides)
    return options


def open_dataset(source: Union[str, Sequence[str]], **options) -> AnyWordBase:
    """The dataset of ``source`` (see the module docstring); ``options``: the dataset keywords."""
    if not isinstance(source, (str, os.PathLike)):
        parts = [open_dataset(str(s), **options) for s in source]
        return parts[0] if len(parts) == 1 else IndexedConcat(parts)
    json_path = anyword_json(str(source))
    return AnyWordDataset(json_path, **options) if json_path else AnyWordLmdbDataset(str(source), **options)
