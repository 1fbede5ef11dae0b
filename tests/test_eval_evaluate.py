"""eval.py on results folders: real crops, region/ + gt/ + instances.json, bad and missing crops, the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from textssr.config import ConfigError
from textssr.eval import EvalError, Recognizer, evaluate_results, format_table, write_contact_sheet, write_metrics

SCORES = ("num", "sen_acc", "ned", "sen_acc_case_insensitive", "ned_case_insensitive")


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer(batch_size=4)  # smaller than the folders, so several batches run


@pytest.fixture(scope="module")
def real_labels(real_crops_dir):
    return json.loads((real_crops_dir / "labels.json").read_text(encoding="utf-8"))


def make_results(root, real_crops_dir, real_labels):
    """An infer.py-like folder built from the real crops.

    gt/ holds the real crops; region/ holds them too for even items and a flat gray image (nothing
    to read) for odd ones, so the generated score must fall below the ceiling. Items alternate
    between PNG and JPEG and between two languages.
    """
    (root / "region").mkdir(parents=True)
    (root / "gt").mkdir()
    labels, instances = {}, []
    for i, (name, text) in enumerate(real_labels.items()):
        crop = Image.open(real_crops_dir / name).convert("RGB")
        file = f"{i}.png" if i % 2 == 0 else f"{i}.jpg"
        crop.save(root / "gt" / file)
        (crop if i % 2 == 0 else Image.new("RGB", crop.size, (128, 128, 128))).save(root / "region" / file)
        labels[file] = text
        instances.append({"file": file, "text": text, "language": "Latin" if i < 6 else "Chinese",
                          "img_name": name, "ann_index": 0})
    (root / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    (root / "instances.json").write_text(json.dumps(instances, ensure_ascii=False), encoding="utf-8")
    return labels


def test_real_word_crops_folder(recognizer, real_crops_dir, real_labels):
    metrics = evaluate_results(real_crops_dir, recognizer, progress=False)
    # the recognizer's own readings of the same crops, in the same batches (a batch is padded to its widest crop)
    crops = [np.asarray(Image.open(real_crops_dir / name).convert("RGB")) for name in real_labels]
    direct = [reading for start in range(0, len(crops), recognizer.batch_size)
              for reading in recognizer.recognize(crops[start:start + recognizer.batch_size])]
    read = dict(zip(real_labels, direct))
    assert metrics["crop_dir"] == "."
    assert metrics["num"] == metrics["num_labels"] == len(real_labels) == 10
    assert metrics["ned"] >= metrics["sen_acc"] >= 0.3
    assert metrics["ned_case_insensitive"] >= 0.6
    assert "ceiling" not in metrics and "per_language" not in metrics
    assert metrics["skipped"] == {}
    rows = {row["file"]: row for row in metrics["predictions"]}
    assert set(rows) == set(real_labels)
    assert rows["1240078.jpg"] == {"file": "1240078.jpg", "target": "ATTACK", "ocr": "ATTACK",
                                   "conf": round(read["1240078.jpg"][1], 4), "correct": True}
    assert all((row["ocr"], row["conf"]) == (read[f][0], round(read[f][1], 4)) for f, row in rows.items())
    assert 0.5 < rows["1240078.jpg"]["conf"] <= 1.0
    assert sum(row["correct"] for row in rows.values()) == round(metrics["sen_acc"] * 10)


def test_region_gt_and_languages(tmp_path, recognizer, real_crops_dir, real_labels):
    make_results(tmp_path / "out", real_crops_dir, real_labels)
    metrics = evaluate_results(tmp_path / "out", recognizer, progress=False)
    assert metrics["crop_dir"] == "region"
    assert metrics["num"] == 10 and metrics["ceiling"]["num"] == 10
    # Odd items are blank in region/: at most the 5 even ones can be right, while gt/ reads the real crops.
    assert metrics["sen_acc"] <= 0.5
    assert metrics["ceiling"]["ned"] > metrics["ned"]
    assert metrics["ceiling"]["sen_acc"] >= metrics["sen_acc"]
    for block in (metrics, metrics["ceiling"]):
        assert set(block["per_language"]) == {"Latin", "Chinese"}
        assert block["per_language"]["Latin"]["num"] == 6 and block["per_language"]["Chinese"]["num"] == 4
        for key in SCORES:
            assert key in block
    row = metrics["predictions"][1]
    assert row["file"] == "1.jpg" and row["language"] == "Latin" and "gt_ocr" in row and "gt_correct" in row
    assert row["correct"] is False  # a gray image shows no text
    table = format_table(metrics)
    assert "ceiling" in table and "Chinese" in table and "skipped: none" in table


def test_missing_and_unreadable_crops_are_counted(tmp_path, recognizer, real_crops_dir, real_labels):
    labels = make_results(tmp_path / "out", real_crops_dir, real_labels)
    (tmp_path / "out" / "region" / "0.png").unlink()
    (tmp_path / "out" / "region" / "2.png").write_bytes(b"not an image")
    (tmp_path / "out" / "gt" / "4.png").unlink()
    labels["extra.png"] = "GHOST"  # named in labels.json, never written
    (tmp_path / "out" / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    metrics = evaluate_results(tmp_path / "out", recognizer, progress=False)
    assert metrics["skipped"] == {"crop_missing": 2, "crop_unreadable": 1, "gt_crop_missing": 1}
    assert metrics["num_labels"] == 11 and metrics["num"] == 8 and metrics["ceiling"]["num"] == 7
    assert {item["file"] for item in metrics["skipped_items"]} == {"0.png", "2.png", "4.png", "extra.png"}
    assert "crop_missing=2" in format_table(metrics)
    with pytest.raises(EvalError, match="strict"):
        evaluate_results(tmp_path / "out", recognizer, strict=True, progress=False)


def test_nothing_readable_and_bad_folders(tmp_path, recognizer):
    with pytest.raises(ConfigError, match="not found"):
        evaluate_results(tmp_path / "absent", recognizer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="labels.json"):
        evaluate_results(tmp_path / "empty", recognizer)
    (tmp_path / "empty" / "labels.json").write_text('{"0.png": "EXIT"}', encoding="utf-8")
    with pytest.raises(EvalError, match="no crop"):
        evaluate_results(tmp_path / "empty", recognizer, progress=False)


def test_contact_sheet_and_metrics_file(tmp_path, recognizer, real_crops_dir, real_labels):
    make_results(tmp_path / "out", real_crops_dir, real_labels)
    labels = json.loads((tmp_path / "out" / "labels.json").read_text(encoding="utf-8"))
    labels["0.png"] = "你好"  # a CJK target must render on the sheet
    (tmp_path / "out" / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    metrics = evaluate_results(tmp_path / "out", recognizer, progress=False)
    written = json.loads(write_metrics(metrics, tmp_path / "m" / "metrics.json").read_text(encoding="utf-8"))
    assert written["predictions"][0]["target"] == "你好"
    few = write_contact_sheet(metrics, tmp_path / "few.png", max_items=3)
    many = write_contact_sheet(metrics, tmp_path / "many.png", max_items=48)
    with Image.open(few) as a, Image.open(many) as b:
        assert a.mode == b.mode == "RGB"
        assert b.height > a.height  # 10 items need more rows than 3
        assert np.asarray(b).std() > 10  # crops and text were drawn, not a blank page


def test_cli_writes_metrics_and_sheet(tmp_path, repo_root, real_crops_dir):
    out = tmp_path / "eval" / "metrics.json"
    done = subprocess.run([sys.executable, "eval.py", "--results", str(real_crops_dir), "--out", str(out),
                           "--batch-size", "4"], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "generated" in done.stdout and "Sen.ACC" in done.stdout
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["num"] == 10
    assert (out.parent / "contact_sheet.png").is_file()


def test_cli_config_mistake_is_one_line(tmp_path, repo_root):
    done = subprocess.run([sys.executable, "eval.py", "--results", str(tmp_path / "nope")],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not found" in done.stderr
