"""STR LMDB: the training-set format of OpenOCR, deep-text-recognition-benchmark and STR-Fewer-Labels.

One folder = one LMDB environment (``data.mdb`` + ``lock.mdb``). Keys, 1-based ``%09d`` indices:

==================  =====================================================================
``image-%09d``      the encoded crop (PNG or JPEG bytes)
``label-%09d``      its text, UTF-8
``wh-%09d``         ``"W_H"`` of the crop in pixels (OpenOCR's optional size key)
``meta-%09d``       UTF-8 JSON provenance (region, variant, source image, original text, OCR read);
                    ignored by the STR loaders, used to merge shards in a fixed order
``num-samples``     the number of samples, decimal string
``synth-state``     UTF-8 JSON resume state of the synthesis run (cursor, counters, settings)
==================  =====================================================================

Crash safety: :meth:`StrLmdbWriter.commit` writes a batch of samples, ``num-samples`` and the
``synth-state`` in **one** LMDB transaction. LMDB commits are atomic and durable (``sync=True``), so
after a kill at any moment the environment holds exactly the samples of the committed batches,
``num-samples`` equals them, and the state says which item comes next: no duplicate, no gap.
"""
from __future__ import annotations

import heapq
import json
import os
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import lmdb
import numpy as np

from textssr.data import image_io

NUM_SAMPLES_KEY = b"num-samples"
STATE_KEY = b"synth-state"
IMAGE_FORMATS = ("png", "jpg")
_INITIAL_MAP_SIZE = 1 << 30  # grows by doubling on demand (sparse file; see _put_all)


def _key(kind: str, index: int) -> bytes:
    return f"{kind}-{index:09d}".encode()


@dataclass
class StrRecord:
    """One crop ready for the LMDB: encoded bytes, label, (width, height), JSON-able provenance."""
    image: bytes
    label: str
    wh: Tuple[int, int]
    meta: Optional[dict] = None


def encode_crop(rgb: np.ndarray, image_format: str = "png", jpeg_quality: int = 95) -> bytes:
    """rgb: uint8 (H, W, 3). Returns PNG or JPEG file bytes (deterministic for the same input)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format={image_format!r}; choose one of {IMAGE_FORMATS}")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpg" else []
    ok, buf = cv2.imencode("." + image_format, bgr, params)
    if not ok:
        raise ValueError(f"cannot encode a crop of shape {rgb.shape} as {image_format}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes → RGB uint8 (H, W, 3), by the datasets' decoder (SkipSample for undecodable bytes)."""
    return cv2.cvtColor(image_io.decode_image(data, "STR LMDB image"), cv2.COLOR_BGR2RGB)


class _LmdbHandle:
    """An open LMDB environment ``self.env``, closed by ``close()`` or on leaving a ``with`` block."""

    def _read_header(self) -> None:
        with self.env.begin() as txn:
            raw_n, raw_state = txn.get(NUM_SAMPLES_KEY), txn.get(STATE_KEY)
        self.num_samples = int(raw_n) if raw_n else 0
        self.state = json.loads(raw_state) if raw_state else None

    def close(self) -> None:
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StrLmdbWriter(_LmdbHandle):
    """Appends samples to an STR LMDB (new or existing), one atomic transaction per :meth:`commit`."""

    def __init__(self, path: str):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.env = lmdb.open(path, map_size=_INITIAL_MAP_SIZE, subdir=True, meminit=False)
        self.env.set_mapsize(max(_INITIAL_MAP_SIZE, self.env.info()["map_size"]))
        self._read_header()

    def commit(self, records: Sequence[StrRecord], state: Optional[dict] = None) -> None:
        """Write ``records`` after the last sample, plus ``num-samples`` and ``state``, atomically."""
        items: List[Tuple[bytes, bytes]] = []
        n = self.num_samples
        for r in records:
            n += 1
            items += [(_key("image", n), r.image), (_key("label", n), r.label.encode("utf-8")),
                      (_key("wh", n), f"{r.wh[0]}_{r.wh[1]}".encode())]
            if r.meta is not None:
                items.append((_key("meta", n), json.dumps(r.meta, ensure_ascii=False).encode("utf-8")))
        items.append((NUM_SAMPLES_KEY, str(n).encode()))
        if state is not None:
            items.append((STATE_KEY, json.dumps(state, ensure_ascii=False, sort_keys=True).encode("utf-8")))
        self._put_all(items)
        self.num_samples = n
        if state is not None:
            self.state = state

    def _put_all(self, items: List[Tuple[bytes, bytes]]) -> None:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in items:
                        txn.put(k, v)
                return
            except lmdb.MapFullError:  # the aborted transaction wrote nothing; grow the map and retry
                self.env.set_mapsize(self.env.info()["map_size"] * 2)


class StrLmdbReader(_LmdbHandle):
    """Random access to an STR LMDB by 1-based index, as the STR loaders read it."""

    def __init__(self, path: str):
        if not os.path.isfile(os.path.join(path, "data.mdb")):
            raise FileNotFoundError(f"no LMDB at {path} (expected {path}/data.mdb)")
        self.path = path
        self.env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        self._read_header()

    def __len__(self) -> int:
        return self.num_samples

    def record(self, index: int) -> StrRecord:
        """Sample ``index`` (1-based) with its bytes, label, size and provenance."""
        if not 1 <= index <= self.num_samples:
            raise IndexError(f"index {index} outside 1..{self.num_samples}")
        with self.env.begin() as txn:
            image, label = txn.get(_key("image", index)), txn.get(_key("label", index))
            wh, meta = txn.get(_key("wh", index)), txn.get(_key("meta", index))
        w, h = (int(v) for v in wh.decode().split("_")) if wh else (0, 0)
        return StrRecord(bytes(image), label.decode("utf-8"), (w, h), json.loads(meta) if meta else None)

    def __iter__(self) -> Iterator[StrRecord]:
        for i in range(1, self.num_samples + 1):
            yield self.record(i)


def merge_str_lmdbs(sources: Sequence[str], dest: str, order: Callable[[StrRecord], tuple],
                    state: Optional[dict] = None, chunk: int = 1000) -> int:
    """Stream the samples of ``sources``, each sorted by ``order(record)``, into a new LMDB at ``dest`` in that order
    (a k-way merge, memory O(k + chunk)); ``state`` is written with the last chunk. Returns the samples written."""
    readers = [StrLmdbReader(s) for s in sources]
    try:
        merged: Iterable[StrRecord] = heapq.merge(*readers, key=order)
        with StrLmdbWriter(dest) as out:
            if out.num_samples:
                raise ValueError(f"merge destination {dest} is not empty")
            while True:
                batch = list(islice(merged, chunk))
                if len(batch) < chunk:  # the last one (maybe empty) carries the state
                    out.commit(batch, state)
                    return out.num_samples
                out.commit(batch)
    finally:
        for r in readers:
            r.close()
