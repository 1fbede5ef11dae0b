"""Real crops → STR LMDB (textssr.str.lmdb_convert): infer-style folders and AnyWord JSON benchmarks."""
import json

import cv2
import numpy as np
import pytest

from textssr.config import ConfigError
from textssr.str.lmdb_convert import convert, rectify
from textssr.synth.str_lmdb import StrLmdbReader, decode_image


def read_all(path):
    with StrLmdbReader(str(path)) as r:
        return list(r)


@pytest.mark.parametrize("angle, size", [(0, (60, 20)), (30, (60, 20)), (-25, (50, 16)), (80, (40, 12))])
def test_rectify_cuts_the_rotated_rectangle_upright_along_its_long_side(angle, size):
    image = np.zeros((200, 200, 3), np.uint8)
    box = cv2.boxPoints(((100, 100), size, angle))
    cv2.fillPoly(image, [np.round(box).astype(np.int32)], (255, 255, 255))
    cv2.circle(image, tuple(np.round(box[0]).astype(int)), 0, (0, 0, 255), -1)
    crop = rectify(image, box)
    assert abs(crop.shape[1] - size[0]) <= 1 and abs(crop.shape[0] - size[1]) <= 1
    assert crop[2:-2, 2:-2].min() >= 200  # the inside only: the rectangle, not its surroundings


def test_a_vertical_rectangle_reads_bottom_to_top():
    image = np.zeros((120, 60, 3), np.uint8)
    image[20:100, 20:40] = 255
    image[90:100, 20:40] = (255, 0, 0)  # the bottom end
    crop = rectify(image, np.array([[20, 20], [40, 20], [40, 100], [20, 100]], np.float64))
    assert crop.shape[1] > crop.shape[0]
    assert crop[:, :5, 0].mean() > 200 and crop[:, :5, 1].mean() < 60  # the bottom end is now on the left


def test_an_anyword_benchmark_becomes_one_upright_crop_per_annotation(bench_mini_dir, tmp_path):
    bench = bench_mini_dir / "benchmark" / "ic13"
    texts = [a["text"] for e in json.loads((bench / "test.json").read_text())["data_list"] for a in e["annotations"]]
    summary = convert(str(tmp_path / "ic13"), bench=str(bench))
    records = read_all(tmp_path / "ic13")
    assert [r.label for r in records] == texts and summary["samples"] == len(texts)
    assert sum(r.wh[0] >= r.wh[1] for r in records) >= 0.9 * len(records)  # IC13 words are horizontal
    assert all(decode_image(r.image).shape[:2] == (r.wh[1], r.wh[0]) for r in records)
    assert json.loads((tmp_path / "ic13.convert.json").read_text())["samples"] == len(texts)


def test_language_filter_and_bad_annotations_are_counted(bench_mini_dir, tmp_path):
    content = json.loads((bench_mini_dir / "benchmark/shopsign/test.json").read_text())
    content["data_root"] = str(bench_mini_dir / "benchmark/shopsign/images")
    first = content["data_list"][0]
    first["annotations"] += [{"polygon": [[0, 0], [1, 1]], "text": "x", "language": "Latin"},
                             {"polygon": [[0, 0], [10, 0], [10, 10], [0, 10]], "text": " ", "language": "Latin"}]
    content["data_list"].append({"img_name": "nowhere.jpg", "annotations": [
        {"polygon": [[0, 0], [10, 0], [10, 10], [0, 10]], "text": "lost", "language": "Latin"}]})
    (tmp_path / "shop.json").write_text(json.dumps(content), encoding="utf-8")
    summary = convert(str(tmp_path / "latin"), bench=str(tmp_path / "shop.json"), language="Latin")
    assert summary["skipped"] == {"polygon_degenerate": 1, "empty_text": 1, "image_missing": 1}
    assert all(r.label.isascii() for r in read_all(tmp_path / "latin"))


def test_real_crops_beside_labels_json_keep_their_pixels_and_labels(real_crops_dir, tmp_path):
    labels = json.loads((real_crops_dir / "labels.json").read_text())
    convert(str(tmp_path / "real"), results=str(real_crops_dir), crops=".")
    records = read_all(tmp_path / "real")
    assert [r.label for r in records] == list(labels.values())
    for record, name in zip(records, labels):
        original = cv2.cvtColor(cv2.imread(str(real_crops_dir / name)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(decode_image(record.image), original)  # PNG: lossless


def test_an_infer_folder_reads_gt_and_an_existing_lmdb_is_never_overwritten(real_crops_dir, tmp_path):
    folder = tmp_path / "infer_out"
    (folder / "gt").mkdir(parents=True)
    labels = json.loads((real_crops_dir / "labels.json").read_text())
    for name in list(labels)[:3]:
        (folder / "gt" / name).write_bytes((real_crops_dir / name).read_bytes())
    (folder / "labels.json").write_text(json.dumps(labels))
    summary = convert(str(tmp_path / "gt"), results=str(folder))
    assert summary["samples"] == 3 and summary["skipped"] == {"image_missing": len(labels) - 3}
    with pytest.raises(ConfigError, match="already holds an STR LMDB"):
        convert(str(tmp_path / "gt"), results=str(folder))
    (folder / "gt2").mkdir()
    with pytest.raises(ConfigError, match="no usable crop"):
        convert(str(tmp_path / "none"), results=str(folder), crops="gt2")
