"""Data lists: the samples of an STR LMDB that a recogniser can train on, checked once before training.

OpenOCR's LMDB datasets trust their input: an LMDB without ``num-samples`` crashes at start-up, a missing or
undecodable image crashes a DataLoader worker mid-training, an empty or too-long label is silently replaced by a
random other sample, and characters outside the character set are silently dropped from the label (the model then
learns a wrong transcription). :func:`scan_lmdb` reads every sample once — label present, UTF-8, not empty, every
character in the recogniser's set, not longer than ``max_text_length``; image present and decodable — and keeps
the good ones' indices and sizes; the rest are counted by reason. The datasets of :mod:`openocr_datasets` read only
listed samples, so nothing bad reaches OpenOCR's transforms.

STR LMDB keys (1-based): ``num-samples``, ``image-%09d``, ``label-%09d`` (and optional ``wh-%09d``). An LMDB
without (or with an unreadable) ``num-samples`` is read by its ``label-`` keys instead, and says so
(``num_samples_missing`` in its report).

Test sets are read as OpenOCR reads them (its ``RatioDataSetTest``, the protocol of the STR benchmarks): each label
without whitespace, folded to ASCII (``NFKD``: "café" → "cafe"), skipped when longer than ``max_text_length``,
then lowercased for a lowercase-only character set and stripped of characters outside the set, and skipped when
nothing is left; the rest are scored against that normalised label. So a test set counts the same samples as
everyone else's; how many labels the normalisation changed is reported (``labels_normalised``).

Spaces: without ``use_space_char`` the recogniser has no space class; OpenOCR's label encoder drops spaces and its
test sets remove whitespace, so spaces are not counted as foreign characters (and not in the length).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import cv2
import lmdb
import numpy as np

from textssr.config import ConfigError

# Reasons a sample is skipped (one source of truth; what each means is in REASONS).
LABEL_MISSING = "label_missing"
LABEL_UNDECODABLE = "label_undecodable"
EMPTY_LABEL = "empty_label"
CHARSET = "charset"
TOO_LONG = "too_long"
IMAGE_MISSING = "image_missing"
IMAGE_UNREADABLE = "image_unreadable"
NUM_SAMPLES_MISSING = "num_samples_missing"  # an LMDB-level note, not a skipped sample
LABELS_NORMALISED = "labels_normalised"  # a test set's note: labels the test normalisation changed

REASONS = {
    LABEL_MISSING: "no label-%09d record",
    LABEL_UNDECODABLE: "label bytes are not UTF-8",
    EMPTY_LABEL: "empty or whitespace-only label",
    CHARSET: "label holds characters outside the recogniser's character set",
    TOO_LONG: "label longer than max_text_length",
    IMAGE_MISSING: "no image-%09d record (or an empty one)",
    IMAGE_UNREADABLE: "image bytes could not be decoded",
    NUM_SAMPLES_MISSING: "LMDB without a readable num-samples key: samples found from its label- keys",
    LABELS_NORMALISED: "test labels changed by the test normalisation (accents folded, foreign characters removed)",
}
_LABEL_KEY = re.compile(rb"^label-(\d{9})$")
LIST_VERSION = 2


def key(kind: str, index: int) -> bytes:
    return f"{kind}-{index:09d}".encode()


def read_charset(dict_path: str, use_space_char: bool = False) -> str:
    """The recogniser's characters: one per line of OpenOCR's ``character_dict_path`` (+ space)."""
    try:
        with open(dict_path, "rb") as f:
            chars = [line.decode("utf-8").rstrip("\r\n") for line in f]
    except UnicodeDecodeError:
        raise ConfigError(f"character_dict={dict_path!r}: not a UTF-8 text file of one character per line") from None
    if not "".join(chars):
        raise ConfigError(f"character_dict={dict_path!r}: holds no character (one per line)")
    return "".join(chars) + (" " if use_space_char else "")


def label_problem(label: str, charset: frozenset, max_text_length: int, use_space_char: bool) -> Optional[str]:
    """The skip reason of ``label`` for a recogniser over ``charset`` (None: trainable as it is)."""
    if not label.strip():
        return EMPTY_LABEL
    text = label if use_space_char else "".join(label.split())
    if any(c not in charset for c in text):
        return CHARSET
    if len(text) > max_text_length:
        return TOO_LONG
    return None


def scored_label(label: str, charset: str, max_text_length: int):
    """(the label a test set scores against, or None; the skip reason) — OpenOCR's test normalisation (module
    doc)."""
    text = unicodedata.normalize("NFKD", "".join(label.split())).encode("ascii", "ignore").decode()
    if len(text) > max_text_length:
        return None, TOO_LONG
    if charset == charset.lower():
        text = text.lower()
    elif charset == charset.upper():
        text = text.upper()
    allowed = set(charset)
    text = "".join(c for c in text if c in allowed)
    return (text, None) if text else (None, EMPTY_LABEL)


def image_size(data: Optional[bytes]):
    """(w, h) of encoded image bytes, decoded whole (so a truncated file is caught); None if undecodable."""
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return int(image.shape[1]), int(image.shape[0])


def find_str_lmdbs(path: str) -> List[str]:
    """``path`` itself if it holds ``data.mdb``, else every folder below it that does (sorted); [] if none."""
    if os.path.isfile(os.path.join(path, "data.mdb")):
        return [path]
    return sorted(root for root, _, files in os.walk(path, followlinks=True) if "data.mdb" in files)


@dataclass
class DataList:
    """The trainable samples of one STR LMDB: 1-based ``indices`` with their ``wh`` (int32 (n, 2)), the samples
    skipped by reason, and ``notes`` (LMDB-level findings such as ``num_samples_missing``)."""
    lmdb_path: str
    indices: np.ndarray
    wh: np.ndarray
    skipped: Dict[str, int] = field(default_factory=dict)
    notes: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, str] = field(default_factory=dict)  # reason → the first sample found with it

    def __len__(self) -> int:
        return int(self.indices.size)

    def report(self) -> dict:
        return {"lmdb": self.lmdb_path, "samples": len(self), "skipped": dict(self.skipped), "notes": dict(self.notes),
                "examples": dict(self.examples)}

    def save(self, path: str, fingerprint: str) -> None:
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, indices=self.indices, wh=self.wh,
                 header=np.frombuffer(json.dumps(dict(self.report(), fingerprint=fingerprint,
                                                      version=LIST_VERSION)).encode(), np.uint8))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, fingerprint: str) -> Optional["DataList"]:
        """The list saved at ``path`` if it was made from the same LMDB with the same checks, else None."""
        try:
            with np.load(path, allow_pickle=False) as a:
                header = json.loads(a["header"].tobytes())
                if header.get("fingerprint") != fingerprint or header.get("version") != LIST_VERSION:
                    return None
                return cls(header["lmdb"], a["indices"], a["wh"], header["skipped"], header["notes"],
                           header.get("examples", {}))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a truncated file: scanned afresh
            return None


def fingerprint(lmdb_path: str, charset: str, max_text_length: int, use_space_char: bool, test: bool = False) -> str:
    """What a data list depends on: the LMDB file (path, size, mtime) and the label checks."""
    st = os.stat(os.path.join(lmdb_path, "data.mdb"))
    parts = [os.path.abspath(lmdb_path), st.st_size, st.st_mtime_ns, charset, max_text_length, use_space_char, test]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def _candidate_indices(txn, entries: int):
    """(1-based indices to check, whether num-samples was missing). A num-samples beyond the LMDB's entry count
    is bounded by it (no sample can lie beyond)."""
    raw = txn.get(b"num-samples")
    try:
        n = int(raw) if raw is not None else None
    except ValueError:
        n = None
    if n is not None and n >= 0:
        return range(1, min(n, entries) + 1), False
    found = []
    with txn.cursor() as cur:
        if cur.set_range(b"label-"):
            for k in cur.iternext(keys=True, values=False):
                if not k.startswith(b"label-"):
                    break
                m = _LABEL_KEY.match(k)
                if m:
                    found.append(int(m.group(1)))
    return sorted(found), True


_ENVS: Dict[str, "lmdb.Environment"] = {}  # py-lmdb opens a file once per process: one environment, shared


def _open(lmdb_path: str):
    try:
        return lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False, meminit=False, max_readers=32)
    except lmdb.Error as exc:
        raise ConfigError(f"{os.path.join(lmdb_path, 'data.mdb')} is not a readable LMDB ({exc}); "
                          "rebuild it or remove it from the config") from None


def environment(lmdb_path: str):
    """The process's read-only environment of an STR LMDB, kept open for the datasets (OpenOCR rebuilds them every
    epoch); a ConfigError naming the file when it is no LMDB."""
    real = os.path.realpath(lmdb_path)  # one file reached by two paths (a link) is still one environment
    if real not in _ENVS:
        _ENVS[real] = _open(lmdb_path)
    return _ENVS[real]


def scan_lmdb(lmdb_path: str, charset: str, max_text_length: int, use_space_char: bool = False,
              progress=None, test: bool = False) -> DataList:
    """Check every sample of the STR LMDB at ``lmdb_path`` (see the module doc); ``test``: a test set's labels
    (OpenOCR's normalisation). ``progress(done, total)`` is called now and then."""
    kept = _ENVS.get(os.path.realpath(lmdb_path))  # py-lmdb opens a file once per process: share the datasets'
    env = kept or _open(lmdb_path)
    try:
        scanned = _scan(env, charset, max_text_length, use_space_char, progress, test)
    finally:
        if kept is None:
            env.close()
    keep, sizes, skipped, examples, normalised, missing_n = scanned
    notes = {NUM_SAMPLES_MISSING: 1} if missing_n else {}
    if normalised:
        notes[LABELS_NORMALISED] = int(normalised)
    return DataList(lmdb_path, np.asarray(keep, np.int64), np.asarray(sizes, np.int32).reshape(-1, 2),
                    dict(skipped), notes, examples)


def _scan(env, charset: str, max_text_length: int, use_space_char: bool, progress, test: bool):
    allowed = frozenset(charset)
    keep, sizes, skipped, examples = [], [], Counter(), {}
    normalised = 0
    with env.begin() as txn:
        candidates, missing_n = _candidate_indices(txn, env.stat()["entries"])
        total = len(candidates)
        for done, i in enumerate(candidates):
            reason = None
            raw_label = txn.get(key("label", i))
            if raw_label is None:
                reason = LABEL_MISSING
            else:
                try:
                    label = bytes(raw_label).decode("utf-8")
                    if test:
                        scored, reason = scored_label(label, charset, max_text_length)
                        normalised += scored is not None and scored != "".join(label.split())
                    else:
                        reason = label_problem(label, allowed, max_text_length, use_space_char)
                except UnicodeDecodeError:
                    reason = LABEL_UNDECODABLE
            wh = None
            if reason is None:
                image = txn.get(key("image", i))
                if not image:
                    reason = IMAGE_MISSING
                else:
                    wh = image_size(bytes(image))
                    reason = IMAGE_UNREADABLE if wh is None else None
            if reason is None:
                keep.append(i)
                sizes.append(wh)
            else:
                skipped[reason] += 1
                examples.setdefault(reason, f"sample {i}")
            if progress is not None and (done % 5000 == 0 or done == total - 1):
                progress(done + 1, total)
    return keep, sizes, skipped, examples, normalised, missing_n


def list_path(lmdb_path: str, cache_dir: str, test: bool = False) -> str:
    """Where the data list of ``lmdb_path`` is cached in ``cache_dir`` (a test set's apart: other label rules)."""
    full = os.path.abspath(lmdb_path)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", full.strip("/"))[-80:]
    return os.path.join(cache_dir, f"{name}.{hashlib.sha256(full.encode()).hexdigest()[:8]}"
                                   f"{'.test' if test else ''}.npz")


def cached_list(lmdb_path: str, charset: str, max_text_length: int, use_space_char: bool,
                cache_dir: str, test: bool = False) -> Optional[DataList]:
    """The cached data list of ``lmdb_path`` if it is up to date, else None."""
    path = list_path(lmdb_path, cache_dir, test)
    if not os.path.isfile(path):
        return None
    return DataList.load(path, fingerprint(lmdb_path, charset, max_text_length, use_space_char, test))


def data_list(lmdb_path: str, charset: str, max_text_length: int, use_space_char: bool, cache_dir: str,
              progress=None, test: bool = False) -> DataList:
    """:func:`scan_lmdb`, cached in ``cache_dir`` (rescanned when the LMDB file or the checks change, or the
    cached file is unreadable)."""
    cached = cached_list(lmdb_path, charset, max_text_length, use_space_char, cache_dir, test)
    if cached is not None:
        return cached
    result = scan_lmdb(lmdb_path, charset, max_text_length, use_space_char, progress, test)
    os.makedirs(cache_dir, exist_ok=True)
    result.save(list_path(lmdb_path, cache_dir, test),
                fingerprint(lmdb_path, charset, max_text_length, use_space_char, test))
    return result


def merge_skips(lists: Sequence[DataList]) -> Dict[str, int]:
    total = Counter()
    for dl in lists:
        total.update(dl.skipped)
    return dict(total)
