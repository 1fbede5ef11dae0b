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


def marked_box(center, size, angle, shape=(200, 200)):
    """A white rotated rectangle on black whose top-left quarter (in its own frame) is red; its corners clockwise
    from that top-left one."""
    image = np.zeros((*shape, 3), np.uint8)
    (cx, cy), (w, h) = center, size
    a = np.radians(angle)
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])  # along the text, down
    c = np.array([cx, cy])
    corners = np.float32([c - u * w / 2 - v * h / 2, c + u * w / 2 - v * h / 2, c + u * w / 2 + v * h / 2,
                          c - u * w / 2 + v * h / 2])
    cv2.fillPoly(image, [np.round(corners).astype(np.int32)], (255, 255, 255))
    quarter = np.float32([corners[0], corners[0] + u * w / 2, corners[0] + u * w / 2 + v * h / 2,
                          corners[0] + v * h / 2])
    cv2.fillPoly(image, [np.round(quarter).astype(np.int32)], (255, 0, 0))
    return image, corners


def red(region):
    return region[..., 0].mean() > 200 and region[..., 1].mean() < 60


@pytest.mark.parametrize("angle, size", [(0, (60, 20)), (30, (60, 20)), (-25, (50, 16)), (10, (90, 30))])
@pytest.mark.parametrize("as_rectangle", [False, True])
def test_a_word_box_is_cut_upright_with_its_top_left_where_it_was(angle, size, as_rectangle):
    """Upright, not upside down or mirrored: the box's top-left quarter lands in the crop's top-left quarter."""
    image, corners = marked_box((100, 100), size, angle)
    polygon = corners if not as_rectangle else np.concatenate([corners, corners[:1] * 0.5 + corners[1:2] * 0.5])
    crop = rectify(image, polygon[[2, 1, 0, 3]] if not as_rectangle else polygon)  # any point order
    assert abs(crop.shape[1] - size[0]) <= 2 and abs(crop.shape[0] - size[1]) <= 2
    h, w = crop.shape[:2]
    assert red(crop[2:h // 2 - 2, 2:w // 2 - 2])
    assert crop[h // 2 + 2:-2, 2:-2].min() >= 200 and crop[2:-2, w // 2 + 2:-2].min() >= 200


def test_a_quadrilateral_is_warped_by_its_corners_without_background():
    image = np.zeros((120, 200, 3), np.uint8)
    quad = np.float32([[30, 40], [170, 20], [175, 90], [25, 80]])  # a perspective word, no rectangle
    cv2.fillPoly(image, [quad.astype(np.int32)], (255, 255, 255))
    crop = rectify(image, quad)
    assert crop[2:-2, 2:-2].min() >= 200  # a minimum-area rectangle would bring in black corners


def test_a_tall_box_is_turned_as_eval_turns_tall_crops():
    """Taller than 1.2 x its width: 90 degrees counter-clockwise (eval.py's rule): its top end on the left."""
    image = np.zeros((120, 60, 3), np.uint8)
    image[20:100, 20:40] = 255
    image[20:30, 20:40] = (255, 0, 0)  # the top end
    crop = rectify(image, np.array([[20, 20], [40, 20], [40, 100], [20, 100]], np.float64))
    assert crop.shape[1] > crop.shape[0]
    assert red(crop[:, :5]) and not red(crop[:, -5:])
    narrow = np.zeros((60, 60, 3), np.uint8)
    narrow[10:32, 20:40] = 255  # 20 wide, 22 tall: under 1.2 x, kept as it stands (a single letter, a narrow number)
    assert rectify(narrow, np.array([[20, 10], [40, 10], [40, 32], [20, 32]], np.float64)).shape[:2] == (22, 20)


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


def shop_json(bench_mini_dir, tmp_path, edit):
    content = json.loads((bench_mini_dir / "benchmark/shopsign/test.json").read_text())
    content["data_root"] = str(bench_mini_dir / "benchmark/shopsign/images")
    edit(content)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return str(path)


def test_polygons_far_outside_the_photo_and_images_outside_data_root_are_skipped_and_counted(bench_mini_dir, tmp_path):
    def edit(content):
        first = content["data_list"][0]
        first["annotations"] = [
            {"polygon": [[10, 10], [60, 10], [60, 30], [10, 1e9]], "text": "huge", "language": "Latin"},
            {"polygon": [[10, 10], [40000, 10], [40000, 40000], [10, 40000]], "text": "vast", "language": "Latin"},
            {"polygon": [[-30000, 5], [50, 5], [50, 25], [-30000, 25]], "text": "far", "language": "Latin"}]
        content["data_list"].append({"img_name": "../images/" + first["img_name"], "annotations": [
            {"polygon": [[0, 0], [10, 0], [10, 10], [0, 10]], "text": "up", "language": "Latin"}] * 2})
        content["data_list"].append({"img_name": "/etc/passwd", "annotations": [
            {"polygon": [[0, 0], [10, 0], [10, 10], [0, 10]], "text": "abs", "language": "Latin"}]})
    summary = convert(str(tmp_path / "out"), bench=shop_json(bench_mini_dir, tmp_path, edit))
    assert summary["skipped"]["polygon_outside"] == 3 and summary["skipped"]["image_outside_root"] == 3
    assert max(max(r.wh) for r in read_all(tmp_path / "out")) < 2000


def test_results_labels_naming_files_outside_the_folder_are_skipped(real_crops_dir, tmp_path):
    folder = tmp_path / "res"
    folder.mkdir()
    labels = json.loads((real_crops_dir / "labels.json").read_text())
    name = next(iter(labels))
    (folder / name).write_bytes((real_crops_dir / name).read_bytes())
    (tmp_path / "secret.png").write_bytes((real_crops_dir / name).read_bytes())
    (folder / "labels.json").write_text(json.dumps({name: "ok", "../secret.png": "x",
                                                    str(tmp_path / "secret.png"): "y"}))
    summary = convert(str(tmp_path / "out"), results=str(folder), crops=".")
    assert summary["samples"] == 1 and summary["skipped"] == {"image_outside_root": 2}


@pytest.mark.parametrize("out, message", [("file", "--out"), ("file/sub", "--out"), ("", "--out")])
def test_a_bad_out_fails_before_any_crop_is_cut(bench_mini_dir, tmp_path, out, message):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=message):
        convert(str(tmp_path / out) if out else "", bench=str(bench_mini_dir / "benchmark/ic13"))


def test_options_that_do_not_apply_and_a_language_that_drops_everything_say_so(bench_mini_dir, real_crops_dir,
                                                                              tmp_path):
    with pytest.raises(ConfigError, match="--language goes with --bench"):
        convert(str(tmp_path / "a"), results=str(real_crops_dir), crops=".", language="Latin")
    with pytest.raises(ConfigError, match="--crops goes with --results"):
        convert(str(tmp_path / "b"), bench=str(bench_mini_dir / "benchmark/ic13"), crops="region")
    with pytest.raises(ConfigError, match="left out .* annotations"):
        convert(str(tmp_path / "c"), bench=str(bench_mini_dir / "benchmark/ic13"), language="Klingon")
    summary = convert(str(tmp_path / "d"), bench=shop_json(bench_mini_dir, tmp_path, lambda c: None),
                      language="Latin")
    assert summary["other_languages"] and sum(summary["other_languages"].values()) > 0
    with pytest.raises(ConfigError, match="data_root must be a folder path"):
        convert(str(tmp_path / "e"), bench=shop_json(bench_mini_dir, tmp_path, lambda c: c.update(data_root=5)))


def test_help_is_the_whole_usage(capsys):
    from textssr.str.lmdb_convert import main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "nothing is written" in text and "counter-clockwise" in text
