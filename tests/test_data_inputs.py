"""Bad input is skipped, counted and reported (strict raises); data_root search; ICDAR15 converter; fonts."""
import json
import os
import shutil
import warnings

import cv2
import numpy as np
import pytest

from textssr.data.errors import DataError
from textssr.data import AnyWordDataset, SkipSample, resolve_font
from textssr.data import fonts
from textssr.data.icdar15 import convert_icdar15, main as icdar15_main

GOOD = [[377, 117], [463, 117], [465, 130], [378, 130]]  # "Genaxis Theatre" in img_1.jpg


def dataset(tmp_path, annotations_by_image, **kw):
    """AnyWord JSON in tmp_path over images copied there (data_root "."); a dict or (name, annotations) pairs."""
    pairs = annotations_by_image.items() if isinstance(annotations_by_image, dict) else annotations_by_image
    data = {"data_root": ".", "data_list": [{"img_name": name, "annotations": anns} for name, anns in pairs]}
    (tmp_path / "a.json").write_text(json.dumps(data, ensure_ascii=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnyWordDataset(str(tmp_path / "a.json"), **kw)


@pytest.fixture
def images(tmp_path, icdar15_dir):
    shutil.copy(icdar15_dir / "img_1.jpg", tmp_path / "good.jpg")
    data = (icdar15_dir / "img_2.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all" * 10)
    cv2.imwrite(str(tmp_path / "white.png"), np.full((100, 200, 3), 255, np.uint8))
    return tmp_path


def ann(text="EXIT", polygon=GOOD):
    return {"polygon": polygon, "text": text, "language": "Latin"}


@pytest.mark.parametrize("bad, reason", [
    (ann(text=""), "empty_text"),
    (ann(polygon=[[1, 1], [5, 5]]), "polygon_degenerate"),
    (ann(polygon=[[1, 1], [5, 5], [9, 9]]), "polygon_degenerate"),  # zero area
    (ann(polygon=[]), "polygon_degenerate"),
    (ann(text="EX\U0001F600IT"), "missing_glyph"),  # an emoji: the CJK font has no glyph for it
])
def test_cheap_bad_annotations_are_filtered_and_counted(images, bad, reason):
    ds = dataset(images, {"good.jpg": [bad, ann()]})
    assert len(ds) == 1 and ds.skip_counts[reason] == 1
    assert reason in ds.report()
    with pytest.raises(SkipSample) as err:
        dataset(images, {"good.jpg": [bad, ann()]}, strict=True)
    assert err.value.reason == reason and "good.jpg" in str(err.value)


@pytest.mark.parametrize("name, polygon, reason", [
    ("missing.jpg", GOOD, "image_missing"),
    ("truncated.jpg", GOOD, "image_unreadable"),
    ("garbage.jpg", GOOD, "image_unreadable"),
    ("white.png", [[10, 10], [50, 10], [50, 30], [10, 30]], "empty_extent"),
    ("good.jpg", [[2000, 900], [2100, 900], [2100, 950], [2000, 950]], "polygon_outside"),
])
def test_expensive_bad_instances_are_substituted_in_getitem(images, name, polygon, reason):
    entries = [(name, [ann(polygon=polygon)]), ("good.jpg", [ann("Genaxis")])]
    ds = dataset(images, entries)
    assert len(ds) == 2
    with pytest.raises(SkipSample) as err:
        ds.build(0)
    assert err.value.reason == reason and name in str(err.value) and "index 0" in str(err.value)
    sample = ds[0]  # the next good instance stands in; the reason travels with it
    assert sample["text"] == "Genaxis" and sample["skipped"] == [(0, reason)]
    assert ds.skip_counts[reason] == 1 and reason in ds.report()
    strict = dataset(images, entries, strict=True)
    with pytest.raises(SkipSample):
        strict[0]


def test_long_text_is_truncated_for_ttf_img_and_counted(images):
    ds = dataset(images, {"good.jpg": [ann("A" * 30)]}, max_len=25)
    s = ds[0]
    assert s["text"] == "A" * 30 and (s["ttf_img"][24] < 1).any() and ds.skip_counts["text_truncated"] == 1


def test_text_override_is_checked_too(images):
    ds = dataset(images, {"good.jpg": [ann()]})
    assert ds.build(0, text="NEW")["text"] == "NEW"
    with pytest.raises(SkipSample) as err:
        ds.build(0, text="\U0001F600")
    assert err.value.reason == "missing_glyph"
    with pytest.raises(SkipSample):
        ds.build(0, text="")


def test_language_filter_and_instance_info(bench_mini_dir):
    path = str(bench_mini_dir / "benchmark/shopsign/test.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full, latin = AnyWordDataset(path), AnyWordDataset(path, language="Latin")
    assert 0 < len(latin) < len(full)
    info = latin.instance_info(0)
    assert info["language"] == "Latin" and set(info) == {"img_name", "ann_index", "text", "language"}
    assert not latin.skip_counts  # another language is not a skip


def test_data_root_relative_to_cwd_first_then_json_ancestors(bench_mini_dir, tmp_path, monkeypatch):
    path = str(bench_mini_dir / "benchmark/ic13/test.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.chdir(bench_mini_dir)  # the original's way: run from the folder above ./benchmark
        a = AnyWordDataset(path)
        monkeypatch.chdir(tmp_path)  # elsewhere: found next to the JSON's ancestors
        b = AnyWordDataset(path)
    assert len(a) == len(b) == 38 and a.image_paths == b.image_paths
    data = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text())
    data["data_root"] = "./nowhere/images"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        AnyWordDataset(str(tmp_path / "bad.json"), vae_mode=True)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "images") in message and "/nowhere/images (no such folder)" in message
    assert message.count(";") >= 2  # every candidate is named


def test_icdar15_converter_on_toy(icdar15_dir, tmp_path, monkeypatch):
    summary = convert_icdar15(str(icdar15_dir), None, str(tmp_path / "ic15" / "test.json"))
    assert summary["words"] == 21 and summary["images"] == 10 and summary["skipped"]["dont_care"] > 0
    data = json.loads((tmp_path / "ic15" / "test.json").read_text(encoding="utf-8"))
    anns = [a for e in data["data_list"] for a in e["annotations"]]
    assert {"Genaxis Theatre", "[06]", "62-03"} <= {a["text"] for a in anns}  # BOM stripped, spaces kept
    assert all(len(a["polygon"]) == 4 and a["language"] == "Latin" for a in anns)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(AnyWordDataset(str(tmp_path / "ic15" / "test.json"))) == 21


def test_icdar15_converter_commas_cjk_and_cli(tmp_path, icdar15_dir, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    shutil.copy(icdar15_dir / "img_1.jpg", gt / "img_7.jpg")
    (gt / "gt_img_7.txt").write_text("\ufeff1,2,30,2,30,20,1,20,a,b,c\n1,1,9,1,9,9,1,9,###\n5,5,40,5,40,30,5,30,中文\n"
                                     "bad line\n", encoding="utf-8")
    assert icdar15_main(["--gt-dir", str(gt), "--out", str(tmp_path / "o.json")]) == 0
    anns = json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))["data_list"][0]["annotations"]
    assert [(a["text"], a["language"]) for a in anns] == [("a,b,c", "Latin"), ("中文", "Chinese")]
    assert "1 dont_care" in capsys.readouterr().out
    assert icdar15_main(["--gt-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 2


def test_font_fallback_warns_once_naming_both_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "_warned", set())
    with pytest.warns(UserWarning) as record:
        chosen = resolve_font(str(tmp_path / "absent.ttf"))
        assert resolve_font(str(tmp_path / "absent.ttf")) == chosen
    assert len(record) == 1 and "absent.ttf" in str(record[0].message) and chosen in str(record[0].message)
    assert os.path.isfile(chosen) and resolve_font(chosen) == chosen
    monkeypatch.setattr(fonts, "fallback_fonts", lambda: [])
    with pytest.raises(DataError, match="pip install cvttf-notosanscjk-bold"):
        resolve_font(str(tmp_path / "absent.ttf"))
