"""Real crops → STR LMDB test (or training) sets, in the community's format (``num-samples``, ``image-%09d``,
``label-%09d``, 1-based; plus OpenOCR's ``wh-%09d``), written by :class:`textssr.synth.str_lmdb.StrLmdbWriter`.

    python -m textssr.str.lmdb_convert --results output/ic13 --out data/str/ic13_gt      # infer.py's gt/ crops
    python -m textssr.str.lmdb_convert --bench benchmark/ic13 --out data/str/textssr_bench_ic13   # AnyWord JSON
        [--language Latin] [--image-format png|jpg]

``--results``: a folder with ``labels.json`` (file → text) and the crops in ``gt/`` (the real crops infer.py cuts;
``--crops region`` takes the generated ones, ``.`` the folder itself — e.g. ../shared/data/real_word_crops).
``--bench``: every annotation of an AnyWord JSON (or a folder holding ``test.json``: the TextSSR-benchmark's IC13,
IC15, ShopSign — subsets of their own, not the standard IC13 857 / IC15 1811 test sets) is cut from its photo: a
quadrilateral by a perspective warp of its four corners, any other polygon by its minimum-area rectangle, each
upright as it stands in the photo (its top edge the one running most to the right); a crop taller than 1.2 x its
width is then turned 90 degrees counter-clockwise, the rule eval.py reads crops by. The community's standard STR
LMDBs (IIIT5K, SVT, IC13, IC15, SVTP, CUTE80) need no conversion: train_str.py reads them as they are.

Bad entries are skipped and counted by reason (printed, and in ``<out>/../<name>.convert.json``): among them
images named outside data_root (absolute, ``../``), polygons reaching far outside their photo; nothing is written
when nothing is usable.
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

from textssr.config.checks import check_output_dir, run_script
from textssr.config import ConfigError
from textssr.utils.jsonio import write_json
from textssr.data import skips
from textssr.data.anyword import (OTHER_LANGUAGE, load_anyword_json, outside_root, resolve_data_root,
                                  screen_annotation, screen_entry)
from textssr.data.image_io import decode_image
from textssr.data.skips import SkipSample
from textssr.eval.crop_check import TALL_RATIO
from textssr.eval.evaluate import GT_DIR, load_crop, open_results
from textssr.synth.str_lmdb import StrLmdbReader, StrLmdbWriter, StrRecord, encode_crop

CROP_DEGENERATE = "crop_degenerate"
MIN_SIDE = 2  # pixels: a narrower crop is not a word


OUTSIDE_MARGIN = 0.1  # a polygon may reach this fraction of its photo's size beyond the photo (annotators' slack)


def _corners(polygon: np.ndarray) -> np.ndarray:
    """Four corners (4, 2) float32 in clockwise order (image coordinates, y down), the top edge first: a convex
    quadrilateral's own, else its minimum-area rectangle's. The top edge is the one running most to the right."""
    pts = polygon.astype(np.float32)
    if len(pts) != 4 or not cv2.isContourConvex(pts.reshape(-1, 1, 2)):
        pts = cv2.boxPoints(cv2.minAreaRect(pts)).astype(np.float32)
    x, y = pts[:, 0], pts[:, 1]
    if float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) < 0:  # counter-clockwise: reverse
        pts = pts[::-1]
    edges = np.roll(pts, -1, axis=0) - pts
    rightward = edges[:, 0] / np.maximum(np.hypot(edges[:, 0], edges[:, 1]), 1e-6)
    return np.roll(pts, -int(np.argmax(rightward)), axis=0)


def rectify(image: np.ndarray, polygon: np.ndarray) -> Optional[np.ndarray]:
    """The polygon cut from ``image`` (H, W, C) and warped upright (module doc); a crop taller than TALL_RATIO x
    its width turned 90 degrees counter-clockwise. None when a side is under MIN_SIDE px."""
    tl, tr, br, bl = _corners(polygon)
    out_w = int(round((np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2))
    out_h = int(round((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2))
    if out_w < MIN_SIDE or out_h < MIN_SIDE:
        return None
    dst = np.float32([(0, 0), (out_w, 0), (out_w, out_h), (0, out_h)])
    crop = cv2.warpPerspective(image, cv2.getPerspectiveTransform(np.float32([tl, tr, br, bl]), dst),
                               (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out_h > TALL_RATIO * out_w:
        crop = np.ascontiguousarray(np.rot90(crop, k=1))
    return crop


def far_outside(polygon: np.ndarray, width: int, height: int) -> bool:
    """Whether the polygon reaches beyond its photo by more than OUTSIDE_MARGIN of the photo's size (or is not
    finite): no word there, and its crop would be the photo's border pixels repeated."""
    if not np.all(np.isfinite(polygon)):
        return True
    mx, my = OUTSIDE_MARGIN * width, OUTSIDE_MARGIN * height
    (x0, y0), (x1, y1) = polygon.min(0), polygon.max(0)
    return x0 < -mx or y0 < -my or x1 > width + mx or y1 > height + my


def results_records(folder: str, crops: str = GT_DIR, skipped: Optional[Counter] = None
                    ) -> Iterator[Tuple[np.ndarray, str, dict]]:
    """(RGB crop, label, provenance) of each ``labels.json`` entry of an infer output folder."""
    results = open_results(folder)
    crop_dir = results.root if crops == "." else results.root / crops
    if not crop_dir.is_dir():
        raise ConfigError(f"--results {folder}: no {crops}/ folder (infer.py writes gt/ and region/; "
                          "--crops . reads the crops beside labels.json)")
    for name, text in results.labels.items():
        if outside_root(name):
            if skipped is not None:
                skipped[skips.IMAGE_OUTSIDE_ROOT] += 1
            continue
        problem = skips.text_problem(text)
        crop, reason = (None, problem) if problem else load_crop(crop_dir / name)
        if crop is None:
            if skipped is not None:
                skipped[{"missing": skips.IMAGE_MISSING, "unreadable": skips.IMAGE_UNREADABLE}.get(
                    reason, reason if reason in skips.REASON_HELP else CROP_DEGENERATE)] += 1
            continue
        yield crop, text, {"file": f"{crops}/{name}"}


def bench_records(bench: str, language: Optional[str] = None, skipped: Optional[Counter] = None,
                  dropped: Optional[Counter] = None) -> Iterator[Tuple[np.ndarray, str, dict]]:
    """(RGB crop, label, provenance) of each annotation of an AnyWord JSON benchmark, rectified; ``dropped``
    counts the annotations the ``language`` filter leaves out, by language."""
    json_path = os.path.join(bench, "test.json") if os.path.isdir(bench) else bench
    content = load_anyword_json(json_path)
    entries = content["data_list"]
    data_root = content.get("data_root")
    if data_root is not None and not isinstance(data_root, str):
        raise ConfigError(f"{json_path}: data_root must be a folder path (a string), found {data_root!r}")
    root = resolve_data_root(data_root or ".", json_path,
                             [e.get("img_name") for e in entries if isinstance(e, dict)])
    count = skipped if skipped is not None else Counter()
    for entry in entries:
        reason, _, name, annotations = screen_entry(entry)
        if reason is None and outside_root(name):
            reason = skips.IMAGE_OUTSIDE_ROOT
        if reason is not None:
            count[reason] += len(annotations) if reason in (skips.IMAGE_NAME_INVALID, skips.IMAGE_OUTSIDE_ROOT) else 1
            continue
        image = None
        for k, ann in enumerate(annotations):
            reason, text, lang, polygon = screen_annotation(ann, language)
            if reason == OTHER_LANGUAGE:
                if dropped is not None:
                    dropped[str(lang)] += 1
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
            if x1 < 0 or y1 < 0 or x0 >= w or y0 >= h or far_outside(polygon, w, h):
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
    if results is not None and language is not None:
        raise ConfigError("--language goes with --bench (an infer.py folder's labels.json has no languages)")
    if bench is not None and crops != GT_DIR:
        raise ConfigError("--crops goes with --results (--bench cuts the crops from the benchmark's photos)")
    if not isinstance(out, str) or not out.strip():
        raise ConfigError("--out: give the folder of the STR LMDB to write")
    check_output_dir(out, "--out")  # before any crop is cut
    skipped: Counter = Counter()
    dropped: Counter = Counter()
    records = (results_records(results, crops, skipped) if results is not None
               else bench_records(bench, language, skipped, dropped))
    records = list(records)  # checks first: an empty result writes nothing
    if not records:
        found = dict(skipped) or ("nothing found" if not dropped else "nothing")
        kept = f"; --language {language} left out {sum(dropped.values())} annotations of {dict(dropped)}" \
            if dropped else ""
        raise ConfigError(f"no usable crop in {results or bench} (skipped: {found}{kept})")
    n = write_lmdb(iter(records), out, image_format)
    summary = {"out": out, "source": results or bench, "samples": n, "skipped": dict(skipped)}
    if dropped:
        summary["other_languages"] = dict(dropped)
    write_json(summary, str(Path(out)).rstrip("/") + ".convert.json")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
          (f"; skipped {summary['skipped']}" if summary["skipped"] else "") +
          (f"; other languages left out {summary['other_languages']}" if summary.get("other_languages") else ""))


if __name__ == "__main__":
    main()
