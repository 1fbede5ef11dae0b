"""What a source is, as digests, so that a resumed run refuses instead of keeping outputs made from another input.

``source_fingerprint``: a whole source (an AnyWord JSON's bytes and its images' sizes, or an AnyWord-lmdb's indexes);
synthesize.py refuses to resume over a changed one. ``chunk_fingerprint``: what one shard of
``textssr.data.build_lmdb`` is built from. ``image_digest``: one instance's image bytes (textssr.infer.instance_key).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence, Tuple

from textssr.data.anyword import load_anyword_json, resolve_data_root
from textssr.data.factory import anyword_json
from textssr.data.lmdb_store import ANNOTATIONS_PREFIX, INDEX_KEY, find_environments, shared_reader


def image_digest(dataset, index: int) -> str:
    """SHA-256 of the encoded bytes of sample ``index``'s image ("missing" when absent); one read per image."""
    key = dataset._image_key(index)
    digests = dataset.__dict__.setdefault("_digests", {})
    if key not in digests:
        data = dataset._image_bytes(key)
        digests[key] = hashlib.sha256(data).hexdigest() if data is not None else "missing"
    return digests[key]


def source_fingerprint(source: str) -> str:
    """A digest of what ``source`` holds (see the module docstring)."""
    json_path = anyword_json(source)
    return json_fingerprint(json_path) if json_path else lmdb_fingerprint(source)


def json_fingerprint(json_path: str) -> str:
    """An AnyWord JSON's bytes and the size of every image it names."""
    with open(json_path, "rb") as f:
        digest = hashlib.sha256(f.read())
    content = load_anyword_json(json_path)
    entries = [e for e in content["data_list"] if isinstance(e, dict) and isinstance(e.get("img_name"), str)]
    root = resolve_data_root(str(content.get("data_root") or "."), json_path, [e["img_name"] for e in entries])
    for entry in entries:
        path = os.path.join(root, entry["img_name"])
        digest.update(f"{entry['img_name']}:{os.path.getsize(path) if os.path.isfile(path) else -1};".encode())
    return digest.hexdigest()


def lmdb_fingerprint(lmdb_path: str) -> str:
    """Each environment's stored ``__index__`` (texts, names, extents, build fingerprint) or, without one, all its
    annotation records and image keys."""
    digest = hashlib.sha256()
    for path in find_environments(str(lmdb_path)):
        digest.update(os.path.relpath(path, str(lmdb_path)).encode())
        with shared_reader(path).begin(buffers=False) as txn:
            blob = txn.get(INDEX_KEY)
            if blob is not None:
                digest.update(blob)
                continue
            cursor = txn.cursor()
            if cursor.set_range(ANNOTATIONS_PREFIX):
                for key, value in cursor:
                    if not key.startswith(ANNOTATIONS_PREFIX):
                        break
                    digest.update(key + b"=" + value)
    return digest.hexdigest()


def chunk_fingerprint(images: Sequence[Tuple[str, str, list]]) -> str:
    """What a shard is made of: every image's name, annotations and file size (not its time: the same inputs give
    the same bytes); a finished shard whose fingerprint differs (texts edited, an image resized) is rebuilt."""
    digest = hashlib.sha256()
    for image_path, img_name, annots in images:
        try:
            size = os.path.getsize(image_path)
        except OSError:
            size = None
        digest.update(json.dumps([img_name, annots, size], sort_keys=True, ensure_ascii=False,
                                 default=str).encode("utf-8"))
    return digest.hexdigest()
