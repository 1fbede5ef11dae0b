"""Shared by the STR tests: OpenOCR's presence, and STR LMDBs with chosen (good and bad) samples."""
import os

import cv2
import lmdb
import numpy as np
import pytest


def require_openocr():
    """Skip where OpenOCR (make install-str) is absent; under CI=true (where .ci/run installs it) fail instead."""
    import importlib.util
    if importlib.util.find_spec("openocr") is None:
        message = "OpenOCR not installed (make install-str)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true, so the STR training tests must run")
        pytest.skip(message)


def word_png(text: str = "ab", size=(64, 24)) -> bytes:
    image = np.full((size[1], size[0], 3), 255, np.uint8)
    cv2.putText(image, text, (2, size[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    return cv2.imencode(".png", image)[1].tobytes()


def write_raw_lmdb(path, samples, num_samples="auto"):
    """An STR LMDB written key by key: ``samples`` is a list of (image bytes or None, label bytes/str or None),
    index i+1; ``num_samples``: "auto" (their count), None (key absent) or the bytes to store."""
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(samples, 1):
            if image is not None:
                txn.put(f"image-{i:09d}".encode(), image)
            if label is not None:
                txn.put(f"label-{i:09d}".encode(), label.encode() if isinstance(label, str) else label)
        if num_samples == "auto":
            txn.put(b"num-samples", str(len(samples)).encode())
        elif num_samples is not None:
            txn.put(b"num-samples", num_samples)
    env.close()
    return str(path)


# One bad sample of each kind, between good ones: (image, label, reason or None).
BAD_SAMPLES = [
    (word_png("ok"), "ok", None),
    (None, "gone", "image_missing"),
    (b"\x89PNG\r\n\x1a\n-truncated", "broken", "image_unreadable"),
    (word_png("x"), "   ", "empty_label"),
    (word_png("x"), "caf\u00e9", "charset"),
    (word_png("x"), "\u4e2d\u6587", "charset"),
    (word_png("x"), "a" * 26, "too_long"),
    (word_png("x"), None, "label_missing"),
    (word_png("x"), b"\xff\xfe", "label_undecodable"),
    (word_png("two words"), "two words", None),  # a space is no foreign character without a space class
]
