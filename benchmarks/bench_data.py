"""Data-layer throughput: samples/s with a ms/sample breakdown, and the time to open a 1 M-annotation LMDB.

    .venv/bin/python benchmarks/bench_data.py [--icdar15 ../shared/data/icdar15_toy] [--passes 5]

One process, torch limited to one thread (what each DataLoader worker runs with). Two orders are timed:
``sequential`` (annotations of one image in a row, as inference and synthesis read them: the image is
decoded once) and ``shuffled-cold`` (the decoded-image cache is emptied before every sample: every sample
pays a full JPEG decode, the worst case of shuffled training). The reference is the original
implementation's ≈ 29 ms/sample on these 1280×720 JPEGs (target ≥ 6×, i.e. ≤ 4.8 ms/sample).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter

import cv2
import lmdb
import numpy as np
import torch

from textssr.data import AnyWordDataset, AnyWordLmdbDataset
from textssr.data.build_lmdb import build_lmdb
from textssr.data.icdar15 import convert_icdar15
from textssr.data.lmdb_store import ANNOTATIONS_PREFIX, IMAGE_PREFIX, INDEX_KEY, IndexTable
from textssr.data.sample import Laps

ORIGINAL_MS = 29.0
STAGES = ("decode", "extent", "mask", "crop_resize", "glyph", "ttf")


def time_dataset(ds, passes: int, order: str, seed: int = 0) -> dict:
    """ms/sample over ``passes`` timed passes, after one untimed pass in the same order (steady state: warm
    font caches and allocator, as in a long-running DataLoader worker)."""
    rng = np.random.default_rng(seed)
    n, t0 = 0, Laps.clock()
    for p in range(passes + 1):
        if p == 1:
            ds.timings, n, t0 = Counter(), 0, Laps.clock()
        ds._images.clear()
        indices = range(len(ds)) if order == "sequential" else rng.permutation(len(ds)).tolist()
        for i in indices:
            if order != "sequential":
                ds._images.clear()
            ds[i]
            n += 1
    total_ms = (Laps.clock() - t0) * 1000 / n
    breakdown = {k: ds.timings[k] * 1000 / n for k in STAGES}
    ds.timings = None
    return dict(ms=total_ms, per_s=1000 / total_ms, **breakdown)


def print_row(name: str, order: str, r: dict) -> None:
    parts = " ".join(f"{k} {r[k]:.2f}" for k in STAGES)
    print(f"{name:<20} {order:<14} {r['ms']:6.2f} ms/sample {r['per_s']:7.1f} samples/s "
          f"({ORIGINAL_MS / r['ms']:4.1f}x original)  [{parts}; other {r['ms'] - sum(r[k] for k in STAGES):.2f}]")


def synthetic_lmdb(path: str, images: int, per_image: int, with_index: bool, shards: int = 5) -> int:
    """An AnyWord-lmdb of ``images × per_image`` annotations (one tiny JPEG repeated); returns samples."""
    ok, jpeg = cv2.imencode(".jpg", np.full((32, 96, 3), 90, np.uint8))
    jpeg = jpeg.tobytes()
    words = ["EXIT", "Theatre", "Carpark", "点穴按摩", "HOTEL", "sale"]
    per_shard = -(-images // shards)
    for s in range(shards):
        ids = [f"{i:09d}" for i in range(s * per_shard, min(images, (s + 1) * per_shard))]
        os.makedirs(os.path.join(path, f"shard-{s:05d}"))
        env = lmdb.open(os.path.join(path, f"shard-{s:05d}"), map_size=1 << 34)
        texts = [words[(j + k) % len(words)] for j in range(len(ids)) for k in range(per_image)]
        anns = [{"polygon": [[2, 2], [90, 2], [90, 30], [2, 30]], "text": words[k % len(words)], "language": "Latin"}
                for k in range(per_image)]
        blob = json.dumps(anns).encode()
        with env.begin(write=True) as txn:
            for image_id in ids:
                txn.put(IMAGE_PREFIX + image_id.encode(), jpeg)
                txn.put(ANNOTATIONS_PREFIX + image_id.encode(), blob)
            if with_index:
                table = IndexTable.from_lists(
                    ids, [f"img_{i}.jpg" for i in ids], np.tile([0, 0, 96, 32], (len(ids), 1)),
                    np.repeat(np.arange(len(ids)), per_image), np.tile(np.arange(per_image), len(ids)),
                    texts, ["Latin"] * len(texts))
                txn.put(INDEX_KEY, table.encode())
        env.close()
    return images * per_image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--icdar15", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                          "icdar15_toy"))
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: process CPU time (robust on a shared machine, the default); wall: elapsed")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--index-annotations", type=int, default=1_000_000)
    parser.add_argument("--scan-annotations", type=int, default=100_000,
                        help="size of the index-less LMDB whose key scan is timed (0 = skip)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.clock == "cpu":
        Laps.clock = staticmethod(time.process_time)
    warnings.simplefilter("ignore")  # the font fallback warning, once per dataset
    with tempfile.TemporaryDirectory() as tmp:
        bench_json = os.path.join(tmp, "ic15", "test.json")
        convert_icdar15(args.icdar15, None, bench_json, data_root=os.path.abspath(args.icdar15))
        build_lmdb([bench_json], os.path.join(tmp, "ic15_lmdb"), progress=False)
        kwargs = dict(resolution=args.resolution)
        datasets = {"AnyWordDataset": AnyWordDataset(bench_json, **kwargs),
                    "AnyWordLmdbDataset": AnyWordLmdbDataset(os.path.join(tmp, "ic15_lmdb"), **kwargs)}
        print(f"ICDAR15 toy: {len(datasets['AnyWordDataset'])} words, resolution {args.resolution}, "
              f"{args.passes} passes, {args.clock} time; ms/sample breakdown in brackets")
        # The first cold JPEG decodes of a process run ~2x slower (OpenCV/libjpeg warm-up): whichever dataset
        # came first used to pay it. One untimed cold pass over every dataset first measures steady state.
        for ds in datasets.values():
            time_dataset(ds, 1, "shuffled-cold")
        for name, ds in datasets.items():
            for order in ("sequential", "shuffled-cold"):
                print_row(name, order, time_dataset(ds, args.passes, order))

        per_image = 5
        path = os.path.join(tmp, "index_1m")
        t0 = time.perf_counter()
        n = synthetic_lmdb(path, args.index_annotations // per_image, per_image, with_index=True)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = AnyWordLmdbDataset(path)
        opened = time.perf_counter() - t0
        assert len(ds) == n, (len(ds), n)
        print(f"open AnyWord-lmdb with stored __index__: {n:,} annotations in {opened:.3f} s "
              f"(target < 2 s; synthetic LMDB written in {built:.1f} s)")
        if args.scan_annotations:
            path = os.path.join(tmp, "scan")
            n = synthetic_lmdb(path, args.scan_annotations // per_image, per_image, with_index=False)
            t0 = time.perf_counter()
            ds = AnyWordLmdbDataset(path)
            scanned = time.perf_counter() - t0
            print(f"open plain AnyWord-lmdb (key scan, no __index__): {n:,} annotations in {scanned:.3f} s "
                  f"(≈ {scanned * 1_000_000 / n:.1f} s per 1 M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
