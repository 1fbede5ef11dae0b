"""Real crops → STR LMDB test (or training) sets, in the community's format (``num-samples``, ``image-%09d``,
``label-%09d``, 1-based; plus OpenOCR's ``wh-%09d``), written by :class:`textssr.synth.str_lmdb.StrLmdbWriter`.

    python -m textssr.str.lmdb_convert --results output/ic13 --out data/str/ic13_gt      # infer.py's gt/ crops
    python -m textssr.str.lmdb_convert --bench benchmark/ic13 --out data/str/ic13       # AnyWord JSON benchmark
        [--language Latin] [--image-format png|jpg]

``--results``: a folder with ``labels.json`` (file → text) and the crops in ``gt/`` (the real crops infer.py cuts;
``--crops region`` takes the generated ones, ``.`` the folder itself — e.g. ../shared/data/real_word_crops).
``--bench``: every annotation of an AnyWord JSON (or a folder holding ``test.json``: the TextSSR-benchmark's IC13,
IC15, ShopSign) is cut from its photo and rectified: the polygon's minimum-area rotated rectangle is warped to an
upright crop whose width runs along the rectangle's long side (left to right; a vertical line reads bottom to
top, as eval.py turns tall crops). The community's standard STR LMDBs (IIIT5K, SVT, IC13, IC15, SVTP, CUTE80) need
no conversion: train_str.py reads them as they are.

Bad entries are skipped and counted by reason (printed, and in ``<out>/../<name>.convert.json``); nothing is
written when nothing is usable.
"""
from __future__ import annotations

import argparse
import math
import os
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import cv2
import numpy as np

from textssr.config.checks import run_script
from textssr.config import ConfigError
from textssr.utils.jsonio import write_json
from textssr.data import skips
from textssr.data.anyword import OTHER_LANGUAGE, load_anyword_json, resolve_data_root, screen_annotation, screen_entry
from textssr.data.image_io import decode_image
from textssr.data.skips import SkipSample
from textssr.eval.evaluate import GT_DIR, load_crop, open_results
from textssr.synth.str_lmdb import StrLmdbReader, StrLmdbWriter, StrRecord, encode_crop

CROP_DEGENERATE = "crop_degenerate"
MIN_SIDE = 2  # pixels: a narrower crop is not a word


def rectify(image: np.ndarray, polygon: np.ndarray) -> Optional[np.ndarray]:
    """The polygon's minimum-area rotated rectangle cut from ``image`` (H, W, C) and warped upright: width along
    the long side, pointing right (a vertical rectangle: pointing up). None when a side is under MIN_SIDE px."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(polygon.astype(np.float32))
    a = math.radians(angle)
    sides = [(w, (math.cos(a), math.sin(a))), (h, (-math.sin(a), math.cos(a)))]
    (length, u), (height, _) = sorted(sides, key=lambda s: -s[0])
    ux, uy = u
    if ux < -1e-6 or (abs(ux) <= 1e-6 and uy > 0):  # text runs left → right (vertical: bottom → top)
        ux, uy = -ux, -uy
    vx, vy = -uy, ux  # "down" in the crop
    out_w, out_h = int(round(length)), int(round(height))
    if out_w < MIN_SIDE or out_h < MIN_SIDE:
        return None
    top_left = (cx - ux * length / 2 - vx * height / 2, cy - uy * length / 2 - vy * height / 2)
    src = np.float32([top_left, (top_left[0] + ux * length, top_left[1] + uy * length),
                      (top_left[0] + vx * height, top_left[1] + vy * height)])
    dst = np.float32([(0, 0), (out_w, 0), (0, out_h)])
    return cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def results_records(folder: str, crops: str = GT_DIR, skipped: Optional[Counter] = None
                    ) -> Iterator[Tuple[np.ndarray, str, dict]]:
    """(RGB crop, label, provenance) of each ``labels.json`` entry of an infer output folder."""
    results = open_results(folder)
    crop_dir = results.root if crops == "." else results.root / crops
    if not crop_dir.is_dir():
        raise ConfigError(f"--results {folder}: no {crops}/ folder (infer.py writes gt/ and region/; "
                          "--crops . reads the crops beside labels.json)")
    for name, text in results.labels.items():
        problem = skips.text_problem(text)
        crop, reason = (None, problem) if problem else load_crop(crop_dir / name)
        if crop is None:
            if skipped is not None:
                skipped[{"missing": skips.IMAGE_MISSING, "unreadable": skips.IMAGE_UNREADABLE}.get(
                    reason, reason if reason in skips.REASON_HELP else CROP_DEGENERATE)] += 1
            continue
        yield crop, text, {"file": f"{crops}/{name}"}


def bench_records(bench: str, language: Optional[str] = None, skipped: Optional[Counter] = None
                  ) -> Iterator[Tuple[np.ndarray, str, dict]]:
    """(RGB crop, label, provenance) of each annotation of an AnyWord JSON benchmark, rectified."""
    json_path = os.path.join(bench, "test.json") if os.path.isdir(bench) else bench
    content = load_anyword_json(json_path)
    entries = content["data_list"]
    root = resolve_data_root(content.get("data_root") or ".", json_path,
                             [e.get("img_name") for e in entries if isinstance(e, dict)])
    count = skipped if skipped is not None else Counter()
    for entry in entries:
        reason, _, name, annotations = screen_entry(entry)
        if reason is not None:
            count[reason] += len(annotations) if reason == skips.IMAGE_NAME_INVALID else 1
            continue
        image = None
        for k, ann in enumerate(annotations):
            reason, text, _, polygon = screen_annotation(ann, language)
            if reason == OTHER_LANGUAGE:
                continue
            if reason is not None:
                count[reason] += 1
                continue
            if image is None:
                path = os.path.join(root, name)
                try:
                    with open(path, "rb") as f:
                        image = cv2.cvtColor(decode_image(f.read(), path), cv2.COLOR_BGR2RGB)
                except OSError:
                    count[skips.IMAGE_MISSING] += len(annotations) - k
                    break
                except SkipSample as exc:
                    count[exc.reason] += len(annotations) - k
                    break
            h, w = image.shape[:2]
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            if x1 < 0 or y1 < 0 or x0 >= w or y0 >= h:
                count[skips.POLYGON_OUTSIDE] += 1
                continue
            crop = rectify(image, polygon)
            if crop is None:
                count[CROP_DEGENERATE] += 1
                continue
            yield crop, text, {"img_name": name, "ann_index": k}


def write_lmdb(records: Iterator[Tuple[np.ndarray, str, dict]], out: str, image_format: str = "png") -> int:
    """Write ``records`` to a new STR LMDB at ``out`` (refused if it already holds samples); returns the count."""
    if os.path.isfile(os.path.join(out, "data.mdb")):
        with StrLmdbReader(out) as existing:
            if len(existing):
                raise ConfigError(f"--out {out} already holds an STR LMDB of {len(existing)} samples; "
                                  "delete it or choose another --out")
    batch, written = [], 0
    with StrLmdbWriter(out) as writer:
        for crop, text, meta in records:
            batch.append(StrRecord(encode_crop(crop, image_format), text, (crop.shape[1], crop.shape[0]), meta))
            if len(batch) == 256:
                writer.commit(batch)
                batch = []
        writer.commit(batch)
        written = writer.num_samples
    return written


def convert(out: str, results: Optional[str] = None, bench: Optional[str] = None, crops: str = GT_DIR,
            language: Optional[str] = None, image_format: str = "png") -> Dict[str, object]:
    """One conversion; returns its summary (also written beside ``out`` as ``<out>.convert.json``)."""
    if (results is None) == (bench is None):
        raise ConfigError("give exactly one of --results (an infer.py output folder) or --bench (an AnyWord JSON)")
    skipped: Counter = Counter()
    records = (results_records(results, crops, skipped) if results is not None
               else bench_records(bench, language, skipped))
    records = list(records)  # checks first: an empty result writes nothing
    if not records:
        raise ConfigError(f"no usable crop in {results or bench} (skipped: {dict(skipped) or 'nothing found'})")
    n = write_lmdb(iter(records), out, image_format)
    summary = {"out": out, "source": results or bench, "samples": n, "skipped": dict(skipped)}
    write_json(summary, str(Path(out)).rstrip("/") + ".convert.json")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="infer.py output folder (labels.json + gt/)")
    parser.add_argument("--bench", help="AnyWord JSON, or a folder holding test.json")
    parser.add_argument("--out", required=True, help="the STR LMDB folder to write")
    parser.add_argument("--crops", default=GT_DIR,
                        help="with --results: gt (default), region, or . (the crops beside labels.json)")
    parser.add_argument("--language", default=None, help="with --bench: keep only this language (e.g. Latin)")
    parser.add_argument("--image-format", default="png", choices=("png", "jpg"))
    args = parser.parse_args(argv)
    summary = run_script(lambda: convert(args.out, args.results, args.bench, args.crops, args.language,
                                         args.image_format), resumable=False)
    print(f"wrote {summary['samples']} crops → {summary['out']}" +
          (f"; skipped {summary['skipped']}" if summary["skipped"] else ""))


if __name__ == "__main__":
    main()
