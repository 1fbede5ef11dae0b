"""Where synthesis's regions come from: an AnyWord source as it is, or a folder of ICDAR annotations or of plain
photos, turned into ``<output_dir>/regions.json`` (AnyWord JSON whose ``data_root`` is the folder) that the run
then reads like any AnyWord JSON.

ICDAR 2013 / 2015 (a folder of ``gt_<image>.txt`` beside the images): read with the converter's parser
(:func:`textssr.data.icdar15.icdar_entries`); ``###`` words and malformed lines are left out and counted.

Photos (jpg/png/webp, searched recursively): PP-OCRv4 finds each photo's text lines (:mod:`textssr.eval.lines`, the
detector of ``edit.py --list``). Every photo's lines are stored once, as ``<detections_dir>/<digest>.json``
(written whole or not at all, so a kill leaves no half record), and found again on a rerun while the photo's size
and modification time are the same: a resumed run detects only the photos not stored yet, and a run with other
filter keys re-filters the stored lines without detecting again. With N processes rank r detects photos r, r+N, …
in a thread beside the generation, and every rank numbers the regions from the records as they come
(:class:`PhotoRegions`). The filter keys remove lines in this order, each line counted under the first rule that
removes it: ``min_line_confidence``, ``min_line_height``, ``min_line_aspect``, ``max_line_aspect``,
``max_line_angle``, ``language``, ``line_chars``. A photo that cannot serve (empty, truncated, not an image, too
small, too large) is skipped and counted (``strict=True``: the first one stops the run).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from textssr.config import ConfigError
from textssr.data import SkipSample, skips
from textssr.data.errors import DataError
from textssr.data.factory import anyword_json
from textssr.data.icdar15 import GT_PATTERN, guess_language, icdar_entries
from textssr.data.photos import line_shape, list_photos, read_photo, walk_photos
from textssr.eval.lines import LineFinder
from textssr.runtime import distributed
from textssr.utils.jsonio import read_json, write_json

REGIONS_FILE = "regions.json"
DETECTIONS = "detections"
LINE_FILTERS = ("min_line_confidence", "min_line_height", "min_line_aspect", "max_line_aspect", "max_line_angle",
                "language", "line_chars")
RECORD_VERSION = 1  # of a stored detection record: a record of another version is detected again


@dataclass
class RegionSource:
    """What the run reads (``path``: an AnyWord JSON, a benchmark folder or an AnyWord-lmdb folder; for photos,
    where the regions are written at the end), the kind of source it was made from ("anyword", "icdar",
    "photos"), what making it counted (stats.json ``source``; photos: at the end), the content the items depend on
    (photos: the listing with each photo's size and time; None: the fingerprint of ``path``) and, for photos,
    rank 0's (photos, stamps) listing."""
    path: str
    kind: str
    stats: Dict[str, object] = field(default_factory=dict)
    content: Optional[str] = None
    photos: Optional[Tuple[List[str], List[Dict[str, int]]]] = None


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
    if next(walk_photos(source), None) is None:
        raise ConfigError(f"source={source}: this folder holds no photo (.jpg, .jpeg, .png, .webp), no ICDAR "
                          "gt_<image>.txt, no test.json and no AnyWord-lmdb (data.mdb); give one of these")
    return "photos"


def region_source(cfg, state) -> RegionSource:
    """The regions of ``cfg.source`` for this run (see the module docstring); ``state``: the process state (rank,
    number of processes). Rank 0 looks at the source for every rank (what kind it is; an ICDAR source's regions,
    written as ``<output_dir>/regions.json``; a photo source's listing, numbered later by :class:`PhotoRegions`)
    and broadcasts what it found, or the one-line refusal every rank then raises."""
    with distributed.waiting(state, cfg.ddp_timeout, f"rank 0 reading source={cfg.source}"):
        return distributed.rank_zero_decision(lambda: _look(cfg))


def _look(cfg) -> RegionSource:
    """Rank 0: the RegionSource of ``cfg.source`` (ConfigError: nothing it can read)."""
    kind = source_kind(str(cfg.source))
    if kind == "anyword":
        return RegionSource(str(cfg.source), kind)
    os.makedirs(cfg.output_dir, exist_ok=True)
    path = os.path.join(cfg.output_dir, REGIONS_FILE)
    if kind == "photos":
        photos, stamps = photo_listing(str(cfg.source))
        return RegionSource(path, kind, content=listing_digest(photos, stamps), photos=(photos, stamps))
    try:
        entries, left_out = icdar_entries(str(cfg.source))
    except DataError as exc:
        raise ConfigError(f"source={cfg.source}: {exc}") from None
    write_regions(path, str(cfg.source), entries)
    words = sum(len(e["annotations"]) for e in entries)
    return RegionSource(path, kind, dict(kind=kind, images=len(entries), words=words, left_out=dict(left_out)))


def write_regions(path: str, root: str, entries: List[dict]) -> None:
    write_json({"data_root": os.path.abspath(root), "data_list": entries}, path, indent=None)


# ---------------------------------------------------------------------------------------------- detection


def detect_beside(mode: str, device) -> bool:
    """The `detection` key: "beside" detects in a CPU thread beside model loading and denoising, "first" every
    photo before generation starts, "auto" beside on an accelerator and first on a CPU (where denoising already
    keeps every core busy, a detection thread only competes with it)."""
    return mode == "beside" or (mode == "auto" and device.type != "cpu")


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


def photo_listing(root: str) -> Tuple[List[str], List[Dict[str, int]]]:
    """The photos under ``root`` (in order) and their stamps."""
    photos = list_photos(root)
    return photos, [photo_stamp(os.path.join(root, p)) for p in photos]


def listing_digest(photos: List[str], stamps: List[Dict[str, int]]) -> str:
    """What a photo source's items depend on, known before any detection: which photos, each as it is now (their
    stored detections are found again by the same stamps, so the same listing numbers the same regions)."""
    return hashlib.sha256(json.dumps([photos, stamps], sort_keys=True).encode("utf-8")).hexdigest()


class PhotoRegions:
    """A photo source's regions, numbered while its photos' lines are found.

    Rank r of N detects photos r, r+N, … not stored yet, in order, in a thread of its own (:meth:`start`), so
    that detection runs beside model loading and denoising. Regions are numbered in photo order, over all ranks'
    photos: :meth:`reach` reads the detection records photo after photo (waiting for this rank's thread, or for
    another rank's record file at most ``ddp_timeout``), filters their lines, and adds the kept ones to
    ``dataset`` (an AnyWord dataset filled from memory) until region ``g`` exists or every photo is read (or
    ``max_regions`` regions are numbered: later photos are not read, and the thread stops detecting). Every rank numbers the same
    regions from the same records, so the plan (rank r owns regions r, r+N, …), the texts and the noise are those
    of a run that detected everything first; :attr:`digest` (the records read) lets rank 0 check that ranks agreed.
    """

    def __init__(self, cfg, state, source: RegionSource, dataset):
        self.cfg, self.dataset = cfg, dataset
        self.rank, self.world = state.process_index, state.num_processes
        self.root, self.folder = str(cfg.source), detections_dir(cfg)
        os.makedirs(self.folder, exist_ok=True)
        self.photos, self.stamps = source.photos
        self.tally = LineTally(cfg)
        self.records: List[dict] = []  # read so far, in photo order
        self.entries: List[dict] = []  # the AnyWord entries of the kept lines so far
        self.complete = False
        self.waited_s = 0.0  # how long reach() waited for a detection record
        own = {i: stored_record(self.folder, self.photos[i], self.stamps[i])
               for i in range(self.rank, len(self.photos), self.world)}
        self._stored = {i: record for i, record in own.items() if record is not None}  # read once, here
        self.todo = [i for i, record in own.items() if record is None]
        self._pending = set(self.todo)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ detection (this rank's share)

    def start(self, num_threads: Optional[int] = None, show_progress: bool = False) -> None:
        """Detect this rank's photos not stored yet, in a thread (``num_threads``: the detector's CPU threads)."""
        if self.todo and self._thread is None:
            self._thread = threading.Thread(target=self._detect, args=(num_threads, show_progress),
                                            name=f"detect-rank{self.rank}", daemon=True)
            self._thread.start()

    def _detect(self, num_threads: Optional[int], show_progress: bool) -> None:
        try:
            finder = LineFinder(num_threads=num_threads)
            for i in tqdm(self.todo, unit="photo", disable=not show_progress, dynamic_ncols=True,
                          desc=f"detecting lines rank {self.rank}"):
                if self._stop.is_set():
                    return
                photo = self.photos[i]
                write_json(detect_photo(finder, self.root, photo, self.cfg), record_path(self.folder, photo),
                           indent=None)
                with self._changed:
                    self._pending.discard(i)
                    self._changed.notify_all()
        except BaseException as exc:  # surfaced by the reader (reach) on this rank
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def wait_detected(self) -> None:
        """Block until this rank's share is detected and stored (``detection="first"``: before generation)."""
        if self._thread is not None:
            self._thread.join()
        self._raise()

    def stop(self) -> None:
        """Stop detecting (the photos not reached are not needed) and let the thread finish its photo, at most
        ``ddp_timeout`` (a record is written whole or not at all, so a thread left behind spoils nothing)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=float(self.cfg.ddp_timeout))

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # ------------------------------------------------------------------ numbering

    @property
    def num_regions(self) -> Optional[int]:
        """The number of regions, None until every photo needed is read."""
        if not self.complete:
            return None
        return len(self.dataset) if self.cfg.max_regions is None else min(len(self.dataset), self.cfg.max_regions)

    def reach(self, region: int) -> bool:
        """True when region ``region`` exists: photos are read (and waited for) until it is numbered or none is
        left."""
        limit = self.cfg.max_regions
        while not self.complete and len(self.dataset) <= region:
            if len(self.records) < len(self.photos):
                self._add(self._record(len(self.records)))
            if len(self.records) == len(self.photos) or (limit is not None and len(self.dataset) >= limit):
                self.complete = True  # known as soon as the photo read completes max_regions
                self._stop.set()  # no more photo is needed
        return region < len(self.dataset) and (limit is None or region < limit)

    def drain(self) -> int:
        """Read every photo needed; the number of regions."""
        self.reach(sys.maxsize)
        return self.num_regions

    def _add(self, record: dict) -> None:
        self.records.append(record)
        entry = self.tally.add(record)
        if entry is not None:
            self.entries.append(entry)
            self.dataset.add_entries([entry], self.root, record_path(self.folder, record["photo"]))

    def _record(self, i: int) -> dict:
        """Photo ``i``'s stored record: waited for as this rank's thread detects it, or as another rank's file
        appears (at most ``ddp_timeout``; then one line names the rank and the photo)."""
        photo, stamp = self.photos[i], self.stamps[i]
        started = time.perf_counter()
        try:
            if i in self._pending:
                with self._changed:
                    while i in self._pending:
                        self._raise()
                        if self._thread is None or not self._thread.is_alive():
                            self._pending.discard(i)  # stopped: read (or miss) the file below
                            break
                        self._changed.wait(1.0)
            self._raise()
            record = self._stored.pop(i, None) or stored_record(self.folder, photo, stamp)
            if record is None and i % self.world == self.rank:
                raise RuntimeError(f"rank {self.rank} stored no detection of its photo {photo} in {self.folder}")
            return record if record is not None else self._wait_for_file(i)
        finally:
            self.waited_s += time.perf_counter() - started

    def _wait_for_file(self, i: int) -> dict:
        photo, stamp, owner = self.photos[i], self.stamps[i], i % self.world
        timeout_s = float(self.cfg.ddp_timeout)

        def ready() -> Optional[dict]:
            self._raise()  # this rank's own detection failed meanwhile
            return stored_record(self.folder, photo, stamp)

        return distributed.poll_until(ready, timeout_s, self.cfg.poll_seconds, lambda: (
            f"rank {self.rank} waited more than {distributed.KEY}={timeout_s:g} s for rank {owner}'s detection of "
            f"photo {photo} ({record_path(self.folder, photo)}): rank {owner} stopped detecting, {self.root} changed "
            f"meanwhile, or {self.folder} is not on storage every rank shares; rerun the same command to resume "
            f"(stored detections and committed batches are kept), raising {distributed.KEY} if the ranks are only "
            "slow"), first_pause_s=0.02)

    # ------------------------------------------------------------------ what was read

    @property
    def digest(self) -> str:
        """What the numbered regions were made from (ranks that read other records numbered other regions)."""
        return records_digest(self.records)

    def stats(self) -> dict:
        """stats.json's ``source`` counts over the photos read (``photos_beyond_max_regions``: those not needed)."""
        return dict(self.tally.stats(), photos_found=len(self.photos),
                    photos_beyond_max_regions=len(self.photos) - len(self.records))

    def totals(self) -> dict:
        """What a shard's final state records of the numbering: the source counts, what indexing skipped and
        filtered (as an AnyWord source's are recorded at its start) and the digest of the records read."""
        filtered = dict(self.dataset.filtered)
        if self.cfg.max_regions is not None:
            filtered[skips.BEYOND_MAX_REGIONS] = max(0, len(self.dataset) - self.cfg.max_regions)
        return dict(source=self.stats(), index_skips=dict(self.dataset.skip_counts),
                    filtered={k: n for k, n in filtered.items() if n}, detections=self.digest)

    def write(self, path: str) -> None:
        """Write the regions read as AnyWord JSON (rank 0, at the end: the contact sheet's and the user's record)."""
        write_regions(path, self.root, self.entries)


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


class LineTally:
    """Filters records one by one (:meth:`add` → the photo's AnyWord entry, None when no line is kept) and counts
    what it saw: photos read and skipped (by reason), lines detected, kept and removed (by filter key)."""

    def __init__(self, cfg):
        if cfg.max_line_aspect is not None and cfg.max_line_aspect < cfg.min_line_aspect:
            raise ConfigError(f"max_line_aspect={cfg.max_line_aspect} is below min_line_aspect={cfg.min_line_aspect}; "
                              "no line could pass: raise max_line_aspect or lower min_line_aspect")
        self.cfg, self.chars = cfg, re.compile(cfg.line_chars) if cfg.line_chars else None
        self.skipped, self.removed, self.detail = Counter(), Counter(), {}
        self.photos = self.detected = self.kept = 0
        self.seconds = 0.0

    def add(self, record: dict) -> Optional[dict]:
        self.photos += 1
        self.seconds += record.get("seconds", 0.0)
        if "skipped" in record:
            self.skipped[record["skipped"]] += 1
            self.detail[record["photo"]] = record["detail"]
            return None
        annotations = []
        for line in record["lines"]:
            self.detected += 1
            reason = line_filter(line, self.cfg, self.chars)
            if reason is not None:
                self.removed[reason] += 1
                continue
            annotations.append(dict(polygon=line["polygon"], text=line["text"],
                                    language=guess_language(line["text"]), confidence=line["confidence"]))
        self.kept += len(annotations)
        return dict(img_name=record["photo"], annotations=annotations) if annotations else None

    def stats(self) -> dict:
        return dict(kind="photos", photos_found=self.photos, photos_read=self.photos - sum(self.skipped.values()),
                    photos_skipped=dict(self.skipped), photos_skipped_detail=dict(self.detail),
                    lines_detected=self.detected, lines_kept=self.kept,
                    lines_removed={k: self.removed[k] for k in LINE_FILTERS if self.removed[k]},
                    detection_s=round(self.seconds, 3))


def report(kind: str, s: dict, file=sys.stderr) -> None:
    """What a photo or ICDAR source held (``s``: its stats.json ``source`` counts), in a line or two (rank 0)."""
    if kind == "photos":
        bad = ", ".join(f"{n} {k}" for k, n in sorted(s["photos_skipped"].items())) or "none"
        removed = ", ".join(f"{n} by {k}" for k, n in s["lines_removed"].items()) or "none"
        beyond = s.get("photos_beyond_max_regions", 0)
        unread = f"; {beyond} not needed for max_regions" if beyond else ""
        print(f"photos: {s['photos_read']} of {s['photos_found']} read (skipped: {bad}{unread}); text lines: "
              f"{s['lines_detected']} detected, {s['lines_kept']} kept (removed: {removed})", file=file)
        for photo, why in sorted(s["photos_skipped_detail"].items()):
            print(f"  skipped photo {photo}: {why}", file=file)
    elif kind == "icdar":
        left = ", ".join(f"{n} {k}" for k, n in sorted(s["left_out"].items())) or "none"
        print(f"ICDAR annotations: {s['words']} words in {s['images']} images (left out: {left})", file=file)
