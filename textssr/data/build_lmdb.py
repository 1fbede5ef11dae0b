"""Convert AnyWord JSON + image files to AnyWord-lmdb (what training reads), with a stored sample index.

    python -m textssr.data.build_lmdb --json train.json [more.json ...] --out AnyWord-lmdb/step1_lmdb \\
        [--shard-size 100000] [--language Latin]

Images are taken in JSON order into leaf environments ``<out>/shard-00000/``, … of ``--shard-size`` images each,
their encoded bytes unchanged; each is decoded once, to check it and to store its content extent. Bad input is
skipped and counted by reason; an image left with no usable annotation is not stored. A finished shard holds
``__index__``, so rerunning the same command resumes at the first unfinished one; ``<out>/build_info.json`` records
the arguments (a resume with others is refused) and a finished shard whose inputs changed is rebuilt.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from typing import List, Optional, Sequence, Tuple

import lmdb
from tqdm import tqdm

from textssr.data.errors import DataError
from textssr.utils.paths import check_output_dir
from textssr.utils.jsonio import read_json, write_json
from textssr.data import geometry, skips
from textssr.data.anyword import (load_anyword_json, outside_root, resolve_data_root, screen_annotation,
                                   screen_entry)
from textssr.data.lmdb_store import (ANNOTATIONS_PREFIX, IMAGE_PREFIX, INDEX_KEY, INDEX_VERSION, IndexTable,
                                     release_reader, shared_reader)
from textssr.data.image_io import decode_image, image_extent
from textssr.data.skips import SkipSample
from textssr.data.fingerprint import chunk_fingerprint

BUILD_INFO = "build_info.json"
COMMIT_EVERY = 1000  # images per write transaction
MAP_SIZE = 1 << 40  # 1 TiB of address space; the file only grows as data is written


def list_images(json_paths: Sequence[str], counts: Optional[Counter] = None,
                allow_outside_root: bool = False) -> List[Tuple[str, str, list]]:
    """(image path, img_name, annotations) of every usable entry of the JSONs, in order; malformed entries and
    (unless ``allow_outside_root``) img_names outside data_root are counted in ``counts`` by reason (as
    :class:`~textssr.data.AnyWordDataset` counts them)."""
    counts = Counter() if counts is None else counts
    images = []
    for json_path in json_paths:
        content = load_anyword_json(json_path)
        entries = []
        for entry in content["data_list"]:
            reason, _, name, annotations = screen_entry(entry)
            if reason is None and not allow_outside_root and outside_root(name):
                reason = skips.IMAGE_OUTSIDE_ROOT
            if reason is None:
                entries.append((name, annotations))
            else:
                per_annotation = reason in (skips.IMAGE_NAME_INVALID, skips.IMAGE_OUTSIDE_ROOT)
                counts[reason] += len(annotations) if per_annotation else 1
        root = resolve_data_root(str(content.get("data_root") or "."), json_path, [name for name, _ in entries])
        images += [(os.path.join(root, name), name, annotations) for name, annotations in entries]
    return images


def check_build_info(out_dir: str, info: dict) -> None:
    """Write ``build_info.json``, or refuse to resume a build made with other arguments."""
    path = os.path.join(out_dir, BUILD_INFO)
    if os.path.isfile(path):
        before = read_json(path)
        if before != info:
            changed = sorted(k for k in set(before) | set(info) if before.get(k) != info.get(k))
            raise DataError(f"{out_dir} holds a build made with other arguments ({', '.join(changed)}); "
                              "use a new --out or delete it")
        return
    os.makedirs(out_dir, exist_ok=True)
    write_json(info, path)


def shard_done(path: str) -> Optional[IndexTable]:
    """The stored index of a finished shard, None when the shard is absent or unfinished."""
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        return None
    with shared_reader(path).begin() as txn:  # shared: a dataset of this process may have it open
        blob = txn.get(INDEX_KEY)
    return IndexTable.decode(blob, path) if blob is not None else None


def store_image(image_path: str, img_name: str, annotations: list, language: Optional[str],
                counts: Counter) -> Optional[Tuple[bytes, geometry.Box, list]]:
    """(bytes, extent, kept [(ann_index, text, language)]) of one image, None when nothing of it is usable; every
    dropped annotation is counted in ``counts`` under its reason."""
    kept = []
    for ann_index, ann in enumerate(annotations):
        reason, text, lang, polygon = screen_annotation(ann, language)
        if reason is not None:  # OTHER_LANGUAGE too: stored with the skips, reported apart (skips.split_filtered)
            counts[reason] += 1
        else:
            kept.append((ann_index, text, lang, polygon))
    if not kept:
        return None
    try:
        with open(image_path, "rb") as f:
            data = f.read()
    except (OSError, ValueError):  # ValueError: a NUL in the name
        counts[skips.IMAGE_MISSING] += len(kept)
        return None
    try:
        extent = image_extent(decode_image(data, img_name), img_name)
    except SkipSample as exc:
        counts[exc.reason] += len(kept)
        return None
    inside = [k for k in kept if geometry.overlaps(geometry.polygon_bbox(k[3]), extent)]
    if len(inside) < len(kept):
        counts[skips.POLYGON_OUTSIDE] += len(kept) - len(inside)
    if not inside:
        return None
    return data, extent, [(i, text, lang) for i, text, lang, _ in inside]


def write_shard(path: str, images: Sequence[Tuple[str, str, list]], first_id: int, language: Optional[str],
                bar, fingerprint: Optional[str] = None) -> IndexTable:
    """Write one shard from scratch; its ``__index__`` is the last write, marking it finished."""
    release_reader(path)
    if os.path.isdir(path):
        shutil.rmtree(path)  # an unfinished shard from an interrupted run: rebuild it
    os.makedirs(path)
    counts: Counter = Counter()
    ids, names, extents, samples = [], [], [], []  # samples: (image row, ann_index, text, language)
    env = lmdb.open(path, map_size=MAP_SIZE, subdir=True)
    try:
        txn = env.begin(write=True)
        for offset, (image_path, img_name, annots) in enumerate(images):
            stored = store_image(image_path, img_name, annots, language, counts)
            if stored is not None:
                data, extent, kept = stored
                image_id = f"{first_id + offset:09d}"
                txn.put(IMAGE_PREFIX + image_id.encode(), data)
                txn.put(ANNOTATIONS_PREFIX + image_id.encode(), json.dumps(annots, ensure_ascii=False).encode())
                samples += [(len(ids), i, text, lang) for i, text, lang in kept]
                ids.append(image_id)
                names.append(img_name)
                extents.append(extent)
            if (offset + 1) % COMMIT_EVERY == 0:
                txn.commit()
                txn = env.begin(write=True)
            bar.update(1)
        columns = zip(*samples) if samples else ([], [], [], [])
        table = IndexTable.from_lists(ids, names, extents, *columns, dict(counts), source=fingerprint)
        txn.put(INDEX_KEY, table.encode())
        txn.commit()
    finally:
        env.close()
    return table


def build_lmdb(json_paths: Sequence[str], out_dir: str, shard_size: int = 100000, language: Optional[str] = None,
               progress: bool = True, allow_outside_root: bool = False) -> dict:
    """Build (or resume building) AnyWord-lmdb at ``out_dir`` from AnyWord JSON files; returns a summary (out,
    shards, resumed_shards, rebuilt_shards, images, samples, skipped {reason: count}, filtered {reason: count}: what
    ``language`` removed, seconds). Raises DataError for missing inputs or a resume with other arguments.
    ``allow_outside_root``: read img_names that are absolute or climb out of data_root (else skipped, counted)."""
    started = time.perf_counter()
    if isinstance(json_paths, (str, os.PathLike)):
        json_paths = [json_paths]
    if not json_paths:
        raise DataError("build_lmdb needs at least one --json AnyWord JSON")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DataError(f"--shard-size {shard_size}; must be an integer >= 1")
    check_output_dir(out_dir, "--out", DataError)
    malformed: Counter = Counter()
    images = list_images([str(p) for p in json_paths], malformed, allow_outside_root)
    info = dict(json=[os.path.abspath(str(p)) for p in json_paths], images=len(images), shard_size=int(shard_size),
                language=language, index_version=INDEX_VERSION)
    check_build_info(out_dir, info)
    num_shards = max(1, -(-len(images) // shard_size))
    skipped: Counter = Counter(malformed)
    samples = stored = resumed = rebuilt = 0
    with tqdm(total=len(images), unit="img", desc="AnyWord-lmdb", disable=not progress, dynamic_ncols=True) as bar:
        for k in range(num_shards):
            path = os.path.join(out_dir, f"shard-{k:05d}")
            chunk = images[k * shard_size:(k + 1) * shard_size]
            fingerprint = chunk_fingerprint(chunk)
            table = shard_done(path)
            if table is not None and table.source != fingerprint:  # its inputs changed since it was written
                rebuilt += 1
                table = None
            if table is None:
                table = write_shard(path, chunk, k * shard_size, language, bar, fingerprint)
            else:
                resumed += 1
                bar.update(len(chunk))
            skipped.update(table.skipped)
            samples += len(table.ann_image)
            stored += len(table.image_ids)
    skipped, filtered = skips.split_filtered(skipped)
    return dict(out=out_dir, shards=num_shards, resumed_shards=resumed, rebuilt_shards=rebuilt, images=stored,
                samples=samples, skipped=skipped, filtered=filtered, seconds=round(time.perf_counter() - started, 3))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m textssr.data.build_lmdb", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", nargs="+", required=True, help="AnyWord JSON file(s)")
    parser.add_argument("--out", required=True, help="output folder (leaf environments shard-NNNNN/)")
    parser.add_argument("--shard-size", type=int, default=100000, help="images per leaf environment")
    parser.add_argument("--language", default=None, help="keep only annotations of this language (e.g. Latin)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-images-outside-root", action="store_true",
                        help="read img_names that are absolute or climb out of data_root with ../ (default: skip and "
                             "count them as image_outside_root)")
    args = parser.parse_args(argv)
    try:
        summary = build_lmdb(args.json, args.out, args.shard_size, args.language, progress=not args.no_progress,
                             allow_outside_root=args.allow_images_outside_root)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"AnyWord-lmdb at {summary['out']}: {summary['shards']} shard(s) ({summary['resumed_shards']} already "
          f"finished, {summary['rebuilt_shards']} rebuilt because their inputs changed), {summary['images']} images, "
          f"{summary['samples']} samples, {summary['seconds']} s")
    print("skipped:\n" + skips.report(summary["skipped"]))
    print(f"filtered: {skips.brief(summary['filtered'])}")
    if summary["samples"] == 0:
        print(f"error: {summary['out']} holds no sample: the inputs left nothing to store (filtered: "
              f"{skips.brief(summary['filtered'])}; skipped: {skips.brief(summary['skipped'])})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
