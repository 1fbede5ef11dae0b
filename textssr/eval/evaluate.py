"""Evaluate an ``infer.py`` output folder (docs/architecture.md): OCR every crop, score it against its target text.

    labels.json      {"<file>": target text}          required
    region/<file>    generated crops                   (absent: the crops lie in the folder itself)
    gt/<file>        real crops of the same regions    optional → the OCR ceiling
    instances.json   [{"file", "language", ...}]       optional → per-language figures

A crop that is missing, unreadable or empty is skipped and counted by reason (``strict`` raises instead). An item
whose generated crop is skipped is left out of both the generated and the ceiling scores; one whose gt crop is
skipped is left out of the ceiling only.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from textssr.config.checks import config_errors
from textssr.config import ConfigError
from textssr.utils.jsonio import read_json, write_json
from textssr.eval.crop_check import crop_problem
from textssr.eval.contact_sheet import SheetItem, default_font_path, render_contact_sheet
from textssr.eval.metrics import SCORE_KEYS, score
from textssr.eval.ocr import OCR_MODEL, ROTATION_RULE, Recognizer

# The results folder infer.py writes (textssr.infer.outputs takes these names from here).
LABELS_FILE, INSTANCES_FILE, REGION_DIR, GT_DIR = "labels.json", "instances.json", "region", "gt"
METRICS_FILE = "metrics.json"
SHEET_FILE = "contact_sheet.png"
UNKNOWN_LANGUAGE = "unknown"


class EvalError(RuntimeError):
    """Evaluation cannot produce a result (nothing readable), or ``strict`` met a skipped item."""


@dataclass
class ResultsFolder:
    """A validated results folder: where the crops are and what each should read."""
    root: Path
    crop_dir: Path
    gt_dir: Optional[Path]
    labels: Dict[str, str]  # file name → target text, in labels.json order
    languages: Optional[Dict[str, str]]  # file name → language, None without instances.json


def open_results(results_dir: Path | str) -> ResultsFolder:
    """Validate ``results_dir`` and read its labels (and languages); a ConfigError names what is wrong."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"--results: folder not found: {root} (write one with `python infer.py`)")
    labels_path = root / LABELS_FILE
    if not labels_path.is_file():
        raise ConfigError(f"--results: {labels_path} not found — the folder must hold labels.json "
                          "(file name → text), as infer.py writes it")
    with config_errors(OSError, ValueError, prefix=f"cannot read {labels_path}: "):
        labels = read_json(labels_path)
    if not isinstance(labels, dict):
        raise ConfigError(f"{labels_path} must map file name → text, found a {type(labels).__name__}")
    languages = None
    if (root / INSTANCES_FILE).is_file():
        with config_errors(OSError, ValueError, prefix=f"cannot read {root / INSTANCES_FILE}: "):
            instances = read_json(root / INSTANCES_FILE)
        if not isinstance(instances, list):
            raise ConfigError(f"{root / INSTANCES_FILE} must be a list of {{file, language, ...}} entries")
        languages = {str(entry["file"]): str(entry["language"]) for entry in instances
                     if isinstance(entry, dict) and entry.get("file") and entry.get("language")}
    crop_dir = root / REGION_DIR if (root / REGION_DIR).is_dir() else root
    gt_dir = root / GT_DIR if (root / GT_DIR).is_dir() else None
    return ResultsFolder(root, crop_dir, gt_dir, labels, languages)


def load_crop(path: Path) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """Read an image file as uint8 RGB (H, W, 3). Returns (crop, None) or (None, reason)."""
    if not path.is_file():
        return None, "missing"
    try:
        with Image.open(path) as image:
            crop = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, "unreadable"
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        return None, "empty"
    problem = crop_problem(crop)  # e.g. 3000 x 1: not a text line (and minutes of OCR)
    if problem:
        return None, problem
    return crop, None


def _score_block(preds: List[str], gts: List[str], langs: Optional[List[str]]) -> dict:
    """Overall scores, plus ``per_language`` when languages are known."""
    block = score(preds, gts)
    if langs is not None:
        block["per_language"] = {
            lang: score([p for p, l in zip(preds, langs) if l == lang], [g for g, l in zip(gts, langs) if l == lang])
            for lang in sorted(set(langs))}
    return block


def evaluate_results(results_dir: Path | str, recognizer: Recognizer, strict: bool = False,
                     progress: bool = True) -> dict:
    """OCR every crop of ``results_dir`` and score it; returns the metrics.json dict: the :data:`SCORE_KEYS` of the
    generated crops, ``per_language`` (with instances.json), ``ceiling`` (with gt/: the real crops' scores),
    ``skipped`` {reason: count}, ``skipped_items`` [{file, reason}], ``predictions`` [{file, target, ocr, conf,
    correct, ...}] and provenance (``results_dir``, ``crop_dir``, ``ocr_model``, ``rotation_rule``, ``num_labels``).
    Raises EvalError when no crop could be read, or on the first skipped item when ``strict``."""
    folder = open_results(results_dir)
    skipped: Counter = Counter()
    skipped_items: List[dict] = []
    predictions: List[dict] = []

    def skip(file: str, reason: str) -> None:
        if strict:
            raise EvalError(f"{file}: {reason} (strict mode; drop --strict to skip and count such items)")
        skipped[reason] += 1
        skipped_items.append({"file": file, "reason": reason})

    files = list(folder.labels)
    batch_size = recognizer.batch_size
    with tqdm(total=len(files), desc="OCR", unit="crop", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            batch = []  # (file, target, crop, gt_crop)
            for file in files[start:start + batch_size]:
                target = folder.labels[file]
                if not isinstance(target, str):
                    skip(file, "label_not_text")
                    continue
                crop, reason = load_crop(folder.crop_dir / file)
                if reason:
                    skip(file, f"crop_{reason}")
                    continue
                gt_crop = None
                if folder.gt_dir is not None:
                    gt_crop, reason = load_crop(folder.gt_dir / file)
                    if reason:
                        skip(file, f"gt_crop_{reason}")
                batch.append((file, target, crop, gt_crop))
            readings = recognizer.recognize([crop for _, _, crop, _ in batch])
            with_gt = [i for i, item in enumerate(batch) if item[3] is not None]
            gt_readings = dict(zip(with_gt, recognizer.recognize([batch[i][3] for i in with_gt])))
            for i, ((file, target, _, _), (text, conf)) in enumerate(zip(batch, readings)):
                row = {"file": file, "target": target, "ocr": text, "conf": round(conf, 4), "correct": text == target}
                if folder.languages is not None:
                    row["language"] = folder.languages.get(file, UNKNOWN_LANGUAGE)
                if i in gt_readings:
                    gt_text, gt_conf = gt_readings[i]
                    row.update(gt_ocr=gt_text, gt_conf=round(gt_conf, 4), gt_correct=gt_text == target)
                predictions.append(row)
            bar.update(len(files[start:start + batch_size]))

    if not predictions:
        raise EvalError(f"no crop in {folder.crop_dir} could be read for the {len(files)} entries of "
                        f"{folder.root / LABELS_FILE} (skipped: {dict(skipped)})")
    langs = [row["language"] for row in predictions] if folder.languages is not None else None
    metrics = {"results_dir": str(folder.root), "crop_dir": str(folder.crop_dir.relative_to(folder.root)),
               "ocr_model": OCR_MODEL, "rotation_rule": ROTATION_RULE, "num_labels": len(files)}
    metrics.update(_score_block([r["ocr"] for r in predictions], [r["target"] for r in predictions], langs))
    if folder.gt_dir is not None:
        rows = [r for r in predictions if "gt_ocr" in r]
        metrics["ceiling"] = _score_block([r["gt_ocr"] for r in rows], [r["target"] for r in rows],
                                          [r["language"] for r in rows] if langs is not None else None)
    metrics.update(skipped=dict(skipped), skipped_items=skipped_items, predictions=predictions)
    return metrics


def write_metrics(metrics: dict, path: Path | str) -> Path:
    """Write ``metrics`` as UTF-8 JSON (CJK kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(metrics, str(path))
    return path


def write_contact_sheet(metrics: dict, path: Path | str, max_items: int = 48,
                        font_path: Path | str | None = None) -> Path:
    """Draw the first ``max_items`` scored items of ``metrics`` (crops re-read from its results folder)."""
    folder = open_results(metrics["results_dir"])
    items = []
    for row in metrics["predictions"][:max_items]:
        gt_crop = load_crop(folder.gt_dir / row["file"])[0] if folder.gt_dir is not None else None
        items.append(SheetItem(file=row["file"], target=row["target"], crop=load_crop(folder.crop_dir / row["file"])[0],
                               ocr=row["ocr"], gt_crop=gt_crop, gt_ocr=row.get("gt_ocr")))
    render_contact_sheet(items, font_path or default_font_path()).save(path)
    return Path(path)


def format_table(metrics: dict) -> str:
    """A short plain-text table: generated vs ceiling, overall and per language, then the skip counts."""
    header = f"{'':10} {'subset':10} {'num':>6} {'Sen.ACC':>8} {'NED':>7} {'Sen.ACC(ci)':>12} {'NED(ci)':>8}"
    lines = [header, "-" * len(header)]

    def row(name: str, subset: str, block: dict) -> str:
        values = [block[k] for k in SCORE_KEYS[1:]]
        cells = [f"{v:.4f}" if v is not None else "-" for v in values]
        return f"{name:10} {subset:10} {block['num']:>6} {cells[0]:>8} {cells[1]:>7} {cells[2]:>12} {cells[3]:>8}"

    blocks = [("generated", metrics)] + ([("ceiling", metrics["ceiling"])] if "ceiling" in metrics else [])
    for name, block in blocks:
        lines.append(row(name, "all", block))
        for lang, sub in block.get("per_language", {}).items():
            lines.append(row(name, lang, sub))
    skipped = metrics.get("skipped") or {}
    lines.append("skipped: " + (", ".join(f"{k}={v}" for k, v in sorted(skipped.items())) if skipped else "none"))
    return "\n".join(lines)
