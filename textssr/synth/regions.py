"""Where synthesis's regions come from: an AnyWord source as it is, or a folder of ICDAR annotations or of plain
photos, turned into ``<output_dir>/regions.json`` (AnyWord JSON whose ``data_root`` is the folder) that the run
then reads like any AnyWord JSON.

ICDAR 2013 / 2015 (a folder of ``gt_<image>.txt`` beside the images): read with the converter's parser
(:func:`textssr.data.icdar15.icdar_entries`); ``###`` words and malformed lines are left out and counted.

Photos (jpg/png/webp, searched recursively): PP-OCRv4 finds each photo's text lines (:mod:`textssr.eval.lines`, the
detector of ``edit.py --list``). Every photo's lines are stored once, as ``<detections_dir>/<digest>.json``
(written whole or not at all, so a kill leaves no half record), and found again on a rerun while the photo's size
and modification time are the same: a resumed run detects only the photos not stored yet, and a run with other
filter keys re-filters the stored lines without detecting again. With N processes rank r detects photos r, r+N, …;
all ranks then wait (bounded by ``ddp_timeout``) and build the same regions from the same records. The filter keys
remove lines in this order, each line counted under the first rule that removes it: ``min_line_confidence``,
``min_line_height``, ``min_line_aspect``, ``max_line_aspect``, ``max_line_angle``, ``language``, ``line_chars``.
A photo that cannot serve (empty, truncated, not an image, too small, too large) is skipped and counted
(``strict=True``: the first one stops the run).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from tqdm import tqdm

from textssr.config import ConfigError
from textssr.data import SkipSample
from textssr.data.errors import DataError
from textssr.data.factory import anyword_json
from textssr.data.icdar15 import GT_PATTERN, guess_language, icdar_entries
from textssr.data.photos import line_shape, list_photos, read_photo
from textssr.eval.lines import LineFinder
from textssr.runtime import distributed
from textssr.utils.errors import on_every_rank
from textssr.utils.jsonio import read_json, write_json

REGIONS_FILE = "regions.json"
DETECTIONS = "detections"
LINE_FILTERS = ("min_line_confidence", "min_line_height", "min_line_aspect", "max_line_aspect", "max_line_angle",
                "language", "line_chars")
RECORD_VERSION = 1  # of a stored detection record: a record of another version is detected again


@dataclass
class RegionSource:
    """What the run reads (``path``: an AnyWord JSON, a benchmark folder or an AnyWord-lmdb folder), the kind of
    source it was made from ("anyword", "icdar", "photos"), what making it counted (stats.json ``source``) and,
    for photos, a digest of the stored detections: what the regions are made from, whatever the filter keys (a
    resume compares it; a changed filter key is a changed setting)."""
    path: str
    kind: str
    stats: Dict[str, object] = field(default_factory=dict)
    detections_digest: Optional[str] = None


def source_kind(source: str) -> str:
    """"anyword" (an AnyWord JSON, a benchmark folder, an AnyWord-lmdb folder), "icdar" (a folder of
    ``gt_*.txt``) or "photos" (a folder with photos and no LMDB); ConfigError for a folder holding none of them."""
    if anyword_json(source) or not os.path.isdir(source):
        return "anyword"
    names = os.listdir(source)
    if any(GT_PATTERN.match(n) for n in names):
        return "icdar"
    if any("data.mdb" in files for _, _, files in os.walk(source, followlinks=True)):
        return "anyword"
    if not list_photos(source):
        raise ConfigError(f"source={source}: this folder holds no photo (.jpg, .jpeg, .png, .webp), no ICDAR "
                          "gt_<image>.txt, no test.json and no AnyWord-lmdb (data.mdb); give one of these")
    return "photos"


def region_source(cfg, state, num_threads: Optional[int] = None) -> RegionSource:
    """The regions of ``cfg.source`` for this run (see the module docstring); ``state``: the process state (rank,
    number of processes); ``num_threads``: the detector's CPU threads. Photo and ICDAR sources write
    ``<output_dir>/regions.json``."""
    kind = source_kind(str(cfg.source))
    if kind == "anyword":
        return RegionSource(str(cfg.source), kind)
    os.makedirs(cfg.output_dir, exist_ok=True)
    if kind == "icdar":
        try:
            entries, left_out = icdar_entries(str(cfg.source))
        except DataError as exc:
            raise ConfigError(f"source={cfg.source}: {exc}") from None
        stats = dict(kind=kind, images=len(entries), words=sum(len(e["annotations"]) for e in entries),
                     left_out=dict(left_out))
    else:
        records = detect_photos(cfg, state, num_threads)
        entries, stats = filter_lines(records, cfg)
        digest = records_digest(records)
    path = os.path.join(cfg.output_dir, REGIONS_FILE)
    if state.process_index == 0:
        write_json({"data_root": os.path.abspath(cfg.source), "data_list": entries}, path, indent=None)
    _everyone(state, cfg, f"rank 0 writing {path}")
    return RegionSource(path, kind, stats, digest if kind == "photos" else None)


def _everyone(state, cfg, what: str) -> None:
    if state.num_processes > 1:
        with distributed.waiting(state, cfg.ddp_timeout, what):
            state.wait_for_everyone()


# ---------------------------------------------------------------------------------------------- detection


def detections_dir(cfg) -> str:
    return cfg.detections_dir or os.path.join(cfg.output_dir, DETECTIONS)


def record_path(folder: str, photo: str) -> str:
    return os.path.join(folder, hashlib.sha1(photo.encode("utf-8")).hexdigest()[:24] + ".json")


def photo_stamp(path: str) -> Dict[str, int]:
    """What identifies a photo's content without reading it: its size and modification time."""
    st = os.stat(path)
    return dict(size=st.st_size, mtime_ns=st.st_mtime_ns)


def stored_record(folder: str, photo: str, stamp: Dict[str, int]) -> Optional[dict]:
    """The stored detection of ``photo`` when it is of this photo as it is now, else None."""
    try:
        record = read_json(record_path(folder, photo))
    except (OSError, ValueError):
        return None
    same = (isinstance(record, dict) and record.get("version") == RECORD_VERSION and record.get("photo") == photo
            and record.get("stamp") == stamp)
    return record if same else None


def detect_photo(finder: LineFinder, root: str, photo: str, cfg) -> dict:
    """The detection record of one photo: its lines (text, confidence, polygon) or, for a photo that cannot serve,
    the ``skipped`` reason (SkipSample under ``strict``)."""
    started = time.perf_counter()
    record = dict(version=RECORD_VERSION, photo=photo, stamp=photo_stamp(os.path.join(root, photo)))
    try:
        image = read_photo(os.path.join(root, photo), cfg.min_photo_side, cfg.max_photo_pixels)
    except SkipSample as exc:
        if cfg.strict:
            raise
        return dict(record, skipped=exc.reason, detail=exc.detail, seconds=0.0)
    lines = finder.detect(image, min_confidence=0.0)  # every reading: min_line_confidence filters later
    record.update(width=int(image.shape[1]), height=int(image.shape[0]),
                  lines=[dict(text=line.text, confidence=round(line.confidence, 6),
                              polygon=[[round(float(x), 2), round(float(y), 2)] for x, y in line.polygon])
                         for line in lines],
                  seconds=round(time.perf_counter() - started, 4))
    return record


def detect_photos(cfg, state, num_threads: Optional[int] = None) -> List[dict]:
    """Every photo's detection record, in photo order: the stored ones, this rank's share of the others detected
    and stored now, the other ranks' read once every rank is done."""
    root, folder = str(cfg.source), detections_dir(cfg)
    os.makedirs(folder, exist_ok=True)
    rank, world = state.process_index, state.num_processes
    photos = distributed.rank_zero_choice(list_photos(root) if rank == 0 else None)  # one listing for all ranks
    stamps = [photo_stamp(os.path.join(root, p)) for p in photos]
    todo = [i for i in range(rank, len(photos), world) if stored_record(folder, photos[i], stamps[i]) is None]
    if todo:
        finder = LineFinder(num_threads=num_threads)
        for i in tqdm(todo, unit="photo", disable=rank != 0, dynamic_ncols=True, desc=f"detecting lines rank {rank}"):
            write_json(detect_photo(finder, root, photos[i], cfg), record_path(folder, photos[i]), indent=None)
    _everyone(state, cfg, f"the other ranks detecting text lines in {root}")
    records, missing = [], []
    for photo, stamp in zip(photos, stamps):
        record = stored_record(folder, photo, stamp)
        if record is None:
            missing.append(photo)
        records.append(record)
    # every rank numbers regions from the records it read: they must be rank 0's, or ranks would mean other regions
    reference = distributed.rank_zero_choice(None if missing else records_digest(records))
    apart, = distributed.ranks_flagged([bool(missing) or records_digest(records) != reference], state.device)
    if apart:
        first = f" (e.g. no detection of {missing[0]})" if missing else ""
        raise on_every_rank(ConfigError(
            f"{distributed.names(apart)} read other detections in {folder} than rank 0 after every rank finished "
            f"detecting{first}: was {root} changed meanwhile, or is {folder} not on storage every rank shares? "
            "Rerun the same command"))
    return records


def records_digest(records: List[dict]) -> str:
    """What the regions of a photo source are made from, whatever the filter keys."""
    return hashlib.sha256(json.dumps([{k: r.get(k) for k in ("photo", "stamp", "skipped", "lines")}
                                      for r in records], sort_keys=True).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- filtering


def line_filter(line: dict, cfg, chars: Optional[re.Pattern]) -> Optional[str]:
    """The first filter key (LINE_FILTERS) that removes a detected line, None to keep it."""
    height, aspect, angle = line_shape(line["polygon"])
    if line["confidence"] < cfg.min_line_confidence:
        return "min_line_confidence"
    if height < cfg.min_line_height:
        return "min_line_height"
    if aspect < cfg.min_line_aspect:
        return "min_line_aspect"
    if cfg.max_line_aspect is not None and aspect > cfg.max_line_aspect:
        return "max_line_aspect"
    if angle > cfg.max_line_angle:
        return "max_line_angle"
    if cfg.language is not None and guess_language(line["text"]) != cfg.language:
        return "language"
    if chars is not None and not chars.fullmatch(line["text"]):
        return "line_chars"
    return None


def filter_lines(records: List[dict], cfg):
    """(AnyWord ``data_list``, counts) from detection records: the lines the filter keys keep, as annotations
    (polygon, reading as ``text``, guessed ``language``), and stats.json's ``source`` counts."""
    if cfg.max_line_aspect is not None and cfg.max_line_aspect < cfg.min_line_aspect:
        raise ConfigError(f"max_line_aspect={cfg.max_line_aspect} is below min_line_aspect={cfg.min_line_aspect}; "
                          "no line could pass: raise max_line_aspect or lower min_line_aspect")
    chars = re.compile(cfg.line_chars) if cfg.line_chars else None
    skipped, removed, detail = Counter(), Counter(), {}
    entries, detected, kept = [], 0, 0
    for record in records:
        if "skipped" in record:
            skipped[record["skipped"]] += 1
            detail[record["photo"]] = record["detail"]
            continue
        annotations = []
        for line in record["lines"]:
            detected += 1
            reason = line_filter(line, cfg, chars)
            if reason is not None:
                removed[reason] += 1
                continue
            annotations.append(dict(polygon=line["polygon"], text=line["text"],
                                    language=guess_language(line["text"]), confidence=line["confidence"]))
        kept += len(annotations)
        if annotations:
            entries.append(dict(img_name=record["photo"], annotations=annotations))
    stats = dict(kind="photos", photos_found=len(records), photos_read=len(records) - sum(skipped.values()),
                 photos_skipped=dict(skipped), photos_skipped_detail=detail, lines_detected=detected,
                 lines_kept=kept, lines_removed={k: removed[k] for k in LINE_FILTERS if removed[k]},
                 detection_s=round(sum(r.get("seconds", 0.0) for r in records), 3))
    return entries, stats


def report(source: RegionSource, file=sys.stderr) -> None:
    """What a photo or ICDAR source held, in a line or two (rank 0)."""
    s = source.stats
    if source.kind == "photos":
        bad = ", ".join(f"{n} {k}" for k, n in sorted(s["photos_skipped"].items())) or "none"
        removed = ", ".join(f"{n} by {k}" for k, n in s["lines_removed"].items()) or "none"
        print(f"photos: {s['photos_read']} of {s['photos_found']} read (skipped: {bad}); text lines: "
              f"{s['lines_detected']} detected, {s['lines_kept']} kept (removed: {removed})", file=file)
        for photo, why in sorted(s["photos_skipped_detail"].items()):
            print(f"  skipped photo {photo}: {why}", file=file)
    elif source.kind == "icdar":
        left = ", ".join(f"{n} {k}" for k, n in sorted(s["left_out"].items())) or "none"
        print(f"ICDAR annotations: {s['words']} words in {s['images']} images (left out: {left})", file=file)

