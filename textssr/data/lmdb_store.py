"""AnyWord-lmdb (method.md §2): the stored sample index and :class:`AnyWordLmdbDataset`.

Layout: a folder tree; every folder holding ``data.mdb`` is one LMDB environment with keys ``image-<id>`` (encoded
image bytes) and ``annotations-<id>`` (UTF-8 JSON list of AnyWord annotations). Those written by ``python -m
textssr.data.build_lmdb`` also hold ``__index__`` (:class:`IndexTable`, one uncompressed ``.npz`` blob), so opening
reads one key per environment; plain AnyWord-lmdb without it is indexed by scanning the keys, as the original does.
"""
from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import lmdb
import numpy as np

from textssr.data.errors import DataError, data_errors
from textssr.data import geometry, skips
from textssr.data.anyword import AnyWordBase
from textssr.data.fonts import font_charset
from textssr.data.skips import SkipSample

INDEX_KEY = b"__index__"
INDEX_VERSION = 1
IMAGE_PREFIX, ANNOTATIONS_PREFIX = b"image-", b"annotations-"
BUILD_HINT = "build one with `python -m textssr.data.build_lmdb --json A.json [B.json ...] --out DIR`"


class PackedStrings:
    """Many strings as one UTF-8 buffer + byte offsets (cheap to store, load and slice)."""

    def __init__(self, data: bytes, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    @classmethod
    def pack(cls, strings: Sequence[str]) -> "PackedStrings":
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(b"".join(encoded), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def raw(self, i: int) -> bytes:
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    def __getitem__(self, i: int) -> str:
        return self.raw(i).decode("utf-8")


@dataclass
class IndexTable:
    """The sample index of one LMDB environment. Extents are (x0, y0, x1, y1), -1 where unknown."""
    image_ids: PackedStrings
    image_names: PackedStrings
    extents: np.ndarray  # int32 (n_images, 4)
    ann_image: np.ndarray  # int32 (n_samples,): row in the image arrays
    ann_index: np.ndarray  # int32 (n_samples,): position in the image's annotation list
    texts: PackedStrings
    text_len: np.ndarray  # int32 (n_samples,): characters
    lang_code: np.ndarray  # int16 (n_samples,): index into lang_names, -1 = none
    lang_names: List[str]
    charset: np.ndarray  # int32: sorted code points used by the texts
    skipped: Dict[str, int] = field(default_factory=dict)
    source: Optional[str] = None  # fingerprint of the inputs the shard was built from (build_lmdb)

    @classmethod
    def from_lists(cls, image_ids: Sequence[str], image_names: Sequence[str], extents, ann_image, ann_index,
                   texts: Sequence[str], languages: Sequence[Optional[str]], skipped: Optional[dict] = None,
                   source: Optional[str] = None):
        names = sorted({lang for lang in languages if lang is not None})
        code = {name: i for i, name in enumerate(names)}
        return cls(PackedStrings.pack(image_ids), PackedStrings.pack(image_names),
                   np.asarray(extents, dtype=np.int32).reshape(-1, 4),
                   np.asarray(ann_image, dtype=np.int32), np.asarray(ann_index, dtype=np.int32),
                   PackedStrings.pack(texts), np.asarray([len(t) for t in texts], dtype=np.int32),
                   np.asarray([code.get(lang, -1) for lang in languages], dtype=np.int16), names,
                   np.asarray(sorted({ord(c) for c in "".join(texts)}), dtype=np.int32), dict(skipped or {}), source)

    def encode(self) -> bytes:
        """The ``__index__`` blob (uncompressed npz; no pickle)."""
        header = dict(version=INDEX_VERSION, lang_names=self.lang_names, skipped=self.skipped, source=self.source)
        arrays = dict(
            header=np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8),
            image_ids=np.frombuffer(self.image_ids.data, np.uint8), image_id_offsets=self.image_ids.offsets,
            image_names=np.frombuffer(self.image_names.data, np.uint8), image_name_offsets=self.image_names.offsets,
            extents=self.extents, ann_image=self.ann_image, ann_index=self.ann_index,
            texts=np.frombuffer(self.texts.data, np.uint8), text_offsets=self.texts.offsets,
            text_len=self.text_len, lang_code=self.lang_code, charset=self.charset)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def decode(cls, blob: bytes, where: str) -> "IndexTable":
        with data_errors(ValueError, KeyError, OSError, prefix=f"{where}: unreadable __index__ (",
                           suffix=f"); rebuild it — {BUILD_HINT}"):
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            header = json.loads(a["header"].tobytes().decode("utf-8"))
        if header.get("version") != INDEX_VERSION:
            raise DataError(f"{where}: __index__ version {header.get('version')} (expected {INDEX_VERSION}); "
                              f"rebuild it — {BUILD_HINT}")
        return cls(PackedStrings(a["image_ids"].tobytes(), a["image_id_offsets"]),
                   PackedStrings(a["image_names"].tobytes(), a["image_name_offsets"]), a["extents"],
                   a["ann_image"], a["ann_index"], PackedStrings(a["texts"].tobytes(), a["text_offsets"]),
                   a["text_len"], a["lang_code"], list(header["lang_names"]), a["charset"], header["skipped"],
                   header.get("source"))


def find_environments(lmdb_path: str) -> List[str]:
    """Every folder under ``lmdb_path`` (itself included) holding a ``data.mdb``, sorted."""
    if not os.path.isdir(lmdb_path):
        raise DataError(f"AnyWord-lmdb not found at {lmdb_path} — {BUILD_HINT}")
    found = sorted(root for root, _, files in os.walk(lmdb_path, followlinks=True) if "data.mdb" in files)
    if not found:
        raise DataError(f"no LMDB environment (data.mdb) under {lmdb_path} — {BUILD_HINT}")
    return found


_READERS: Dict[str, lmdb.Environment] = {}
_READERS_PID: Optional[int] = None


def shared_reader(path: str, real_path: Optional[str] = None) -> lmdb.Environment:
    """This process's read-only environment of ``path``, shared by every dataset reading it (py-lmdb refuses to
    open one environment twice in a process); a forked child (DataLoader worker) first closes its inherited copies
    (py-lmdb counts those as open too; closing them in the child leaves the parent's alone), then opens its own."""
    global _READERS_PID
    if _READERS_PID != os.getpid():
        for env in _READERS.values():
            env.close()
        _READERS.clear()
        _READERS_PID = os.getpid()
    key = real_path or os.path.realpath(path)
    env = _READERS.get(key)
    if env is None:
        env = _READERS[key] = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                                        max_readers=4096)
    return env


def release_reader(path: str) -> None:
    """Close this process's shared reader of ``path``, if any, before the converter rewrites it (a dataset of
    this process still reading it would read a shard being replaced; it reopens the new one)."""
    env = _READERS.pop(os.path.realpath(path), None) if _READERS_PID == os.getpid() else None
    if env is not None:
        env.close()


class AnyWordLmdbDataset(AnyWordBase):
    """AnyWord-lmdb folder (one environment or a tree of them); ``options`` are :class:`AnyWordBase`'s.

    With a stored ``__index__`` the ``language`` filter and the font's missing characters are applied to the
    stored arrays, and the build-time skip counts added to ``skip_counts``; without it every key is scanned (and
    every annotation checked) on open.
    """

    def __init__(self, lmdb_path: str, **options):
        super().__init__(**options)
        self.lmdb_path = str(lmdb_path)
        self.env_paths = find_environments(self.lmdb_path)
        self.tables: List[IndexTable] = []
        self.rows: List[np.ndarray] = []  # per environment: the table rows that are samples
        self.indexed: List[bool] = []  # per environment: whether it had a stored __index__
        for path in self.env_paths:
            with shared_reader(path).begin(buffers=False) as txn:
                blob = txn.get(INDEX_KEY)
                table = IndexTable.decode(blob, path) if blob is not None else self._scan(txn, path)
            rows = self._screen(table, path) if blob is not None else np.arange(len(table.ann_image))
            self.tables.append(table)
            self.rows.append(rows)
            self.indexed.append(blob is not None)
        self._starts = np.cumsum([0] + [len(r) for r in self.rows])
        self._real_paths = [os.path.realpath(p) for p in self.env_paths]  # shared_reader's keys

    # ------------------------------------------------------------------ index
    def _scan(self, txn, path: str) -> IndexTable:
        """Index of a plain AnyWord-lmdb environment: every ``image-<id>`` key and its annotations, checked."""
        ids, samples = [], []  # samples: (image row, ann_index, text, language)
        cursor = txn.cursor()
        if cursor.set_range(IMAGE_PREFIX):
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(IMAGE_PREFIX):
                    break
                image_id = key[len(IMAGE_PREFIX):].decode("utf-8")
                raw = txn.get(ANNOTATIONS_PREFIX + key[len(IMAGE_PREFIX):])
                try:
                    annotations = json.loads(raw) if raw is not None else []
                except ValueError:
                    annotations = None
                if not isinstance(annotations, list):
                    self._reject(skips.POLYGON_DEGENERATE, image_id, -1, "annotations are not a JSON list")
                    continue
                for ann_index, ann in enumerate(annotations):
                    kept = self._check_annotation(ann, image_id, ann_index)
                    if kept is not None:
                        samples.append((len(ids), ann_index, kept[0], kept[1]))
                ids.append(image_id)
        columns = zip(*samples) if samples else ([], [], [], [])
        return IndexTable.from_lists(ids, ids, np.full((len(ids), 4), -1), *columns)

    def _screen(self, table: IndexTable, path: str) -> np.ndarray:
        """Rows of a stored index to keep: the language filter, then texts with characters the font lacks."""
        skipped, filtered = skips.split_filtered(table.skipped)  # filtered: by build_lmdb --language
        self.skip_counts.update(skipped)
        self.filtered.update(filtered)
        keep = np.ones(len(table.ann_image), dtype=bool)
        if self.language is not None:  # annotations without a language are kept, as AnyWordDataset keeps them
            code = table.lang_names.index(self.language) if self.language in table.lang_names else -2  # -2: none
            keep &= (table.lang_code == code) | (table.lang_code < 0)
            if not keep.all():
                self.filtered[skips.OTHER_LANGUAGE] += int((~keep).sum())
        if not self.vae_mode:
            have = font_charset(self.font_path)
            lacking = [chr(c) for c in table.charset.tolist() if c not in have]
            if lacking:
                pattern = re.compile(b"|".join(re.escape(c.encode("utf-8")) for c in lacking))
                hits = np.fromiter((m.start() for m in pattern.finditer(table.texts.data)), dtype=np.int64)
                bad = np.zeros_like(keep)
                bad[np.unique(np.searchsorted(table.texts.offsets, hits, side="right") - 1)] = True
                bad &= keep
                if bad.any() and self.strict:
                    row = int(np.flatnonzero(bad)[0])
                    raise SkipSample(skips.MISSING_GLYPH, f"{table.image_names[int(table.ann_image[row])]} annotation "
                                     f"{int(table.ann_index[row])} in {path}: {table.texts[row]!r}")
                self.skip_counts[skips.MISSING_GLYPH] += int(bad.sum())
                keep &= ~bad
            truncated = int((table.text_len[keep] > self.max_len).sum())
            if truncated:  # no zero entry: skip_counts lists what happened
                self.skip_counts[skips.TEXT_TRUNCATED] += truncated
        return np.flatnonzero(keep)

    # ------------------------------------------------------------------ AnyWordBase interface
    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, index: int) -> Tuple[int, int]:
        env = int(np.searchsorted(self._starts, index, side="right") - 1)
        return env, int(self.rows[env][index - self._starts[env]])

    def _record(self, index: int):
        env, row = self._locate(index)
        table = self.tables[env]
        image = int(table.ann_image[row])
        code = int(table.lang_code[row])
        return ((env, image), table.image_names[image], int(table.ann_index[row]), table.texts[row],
                table.lang_names[code] if code >= 0 else None)

    def _get(self, env: int, key: bytes) -> Optional[bytes]:
        # the reader looked up every time (a dict lookup): a DataLoader worker opens its own, a rebuilt shard reopens
        with shared_reader(self.env_paths[env], self._real_paths[env]).begin(buffers=False) as txn:
            return txn.get(key)

    def _image_bytes(self, key) -> Optional[bytes]:
        env, image = key
        return self._get(env, IMAGE_PREFIX + self.tables[env].image_ids.raw(image))

    def _stored_extent(self, key) -> Optional[geometry.Box]:
        env, image = key
        extent = self.tables[env].extents[image]
        return None if extent[0] < 0 else tuple(int(v) for v in extent)

    def polygon(self, index: int) -> np.ndarray:
        env, row = self._locate(index)
        table = self.tables[env]
        image_id = table.image_ids.raw(int(table.ann_image[row]))
        raw = self._get(env, ANNOTATIONS_PREFIX + image_id)
        try:
            polygon = geometry.parse_polygon(json.loads(raw)[int(table.ann_index[row])]["polygon"])
        except (TypeError, ValueError, IndexError, KeyError):
            polygon = None
        if polygon is None:
            raise SkipSample(skips.POLYGON_DEGENERATE, f"{image_id.decode()} annotation {table.ann_index[row]}: "
                             f"polygon unreadable in {self.env_paths[env]}")
        return polygon

