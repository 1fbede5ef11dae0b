"""The embedded tiny corpus: deterministic, exact polygons, a bench disjoint from training, step 2 ⊂ step 1."""
import json

import cv2
import lmdb
import numpy as np
import pytest
from PIL import Image

from textssr.data import tiny_data
from textssr.data.errors import DataError
from textssr.data.tiny_data import (CHINESE, LATIN, FontBank, FontMissingError, FontSource, draw_scene, generate,
                                    load_word_lists, scene_rng, scene_size, split_words)

# The data layer warns that the original's glyph font is absent and Noto Sans CJK Bold stands in: expected here.
FALLBACK_FONT_WARNING = "ignore:font .* not found:UserWarning"
SMALL = dict(num_images=8, bench_images=4, seed=11)
FEW = dict(num_images=3, bench_images=2, seed=11)


@pytest.fixture(scope="module")
def fonts():
    return FontBank()


@pytest.fixture(scope="module")
def pools():
    return split_words(load_word_lists(), seed=11)


@pytest.fixture(scope="module")
def scenes(fonts, pools):
    """Twelve training scenes drawn in memory, with each word's ink coverage."""
    drawn = []
    for index in range(12):
        rng = scene_rng(11, "train", index)
        drawn.append(draw_scene(rng, *scene_size(rng, tiny_data.DEFAULT_RESOLUTION), pools[0], fonts))
    return drawn


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "corpus"
    generate(out, **SMALL, build_lmdbs=True, progress=False)
    return out


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def texts(anyword):
    return [a["text"] for entry in anyword["data_list"] for a in entry["annotations"]]


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "lmdb" not in p.as_posix()}


def test_same_seed_gives_identical_bytes(tmp_path):
    generate(tmp_path / "a", **FEW, build_lmdbs=False, progress=False)
    generate(tmp_path / "b", **FEW, build_lmdbs=False, progress=False)
    first, second = files(tmp_path / "a"), files(tmp_path / "b")
    assert len([name for name in first if name.endswith(".jpg")]) == FEW["num_images"] + FEW["bench_images"]
    assert first == second


def test_other_seed_gives_other_corpus(tmp_path):
    generate(tmp_path / "a", **FEW, build_lmdbs=False, progress=False)
    generate(tmp_path / "b", **{**FEW, "seed": 12}, build_lmdbs=False, progress=False)
    assert texts(read_json(tmp_path / "a/train.json")) != texts(read_json(tmp_path / "b/train.json"))


def test_polygons_lie_inside_the_image_and_cover_the_ink(scenes):
    for scene in scenes:
        height, width = scene.image.shape[:2]
        for instance in scene.instances:
            polygon = np.asarray(instance.polygon, np.float32)
            assert polygon.shape == (4, 2)
            assert polygon.min() >= 0 and polygon[:, 0].max() <= width - 1 and polygon[:, 1].max() <= height - 1
            ys, xs = np.nonzero(instance.ink >= 0.5)
            distances = [cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x, y in zip(xs, ys)]
            assert min(distances) >= -0.5, f"ink of {instance.text!r} outside its polygon"


def test_polygons_are_tight_rotated_boxes(scenes):
    """Every side of a polygon touches the ink — any visible coverage, even antialiasing — within the margin plus
    rounding, and the corners are square."""
    for scene in scenes:
        for instance in scene.instances:
            polygon = np.asarray(instance.polygon, np.float64)
            ink = np.stack(np.nonzero(instance.ink > 0.02)[::-1], axis=1).astype(np.float64)
            for k in range(4):
                a, b = polygon[k], polygon[(k + 1) % 4]
                normal = np.array([b[1] - a[1], a[0] - b[0]]) / np.linalg.norm(b - a)
                gap = np.abs((ink - a) @ normal).min()
                assert gap <= tiny_data.POLYGON_MARGIN + 1.5, f"{instance.text!r}: side {k} is {gap:.1f} px off"
                c = polygon[(k + 2) % 4]
                cosine = np.dot(b - a, c - b) / np.linalg.norm(b - a) / np.linalg.norm(c - b)
                assert abs(cosine) < 0.1


def test_text_areas_do_not_overlap(scenes):
    assert any(len(scene.instances) > 1 for scene in scenes)
    for scene in scenes:
        count = np.zeros(scene.image.shape[:2], np.int32)
        for instance in scene.instances:
            area = np.zeros_like(count, dtype=np.uint8)
            cv2.fillPoly(area, [np.asarray(instance.polygon, np.int32)], 1)
            count += area
        assert count.max() <= 1


def test_words_have_3_to_10_characters_and_enough_contrast(scenes):
    instances = [instance for scene in scenes for instance in scene.instances]
    assert {instance.language for instance in instances} <= {LATIN, CHINESE}
    for instance in instances:
        assert 3 <= len(instance.text) <= 10
        assert instance.contrast >= tiny_data.MIN_CONTRAST
        assert abs(instance.angle) <= tiny_data.MAX_ANGLE


def test_corpus_files_are_anyword_json(corpus):
    for name, images in (("train.json", corpus / "images"), ("bench/test.json", corpus / "bench/images")):
        anyword = read_json(corpus / name)
        assert anyword["data_root"] == "images"
        for entry in anyword["data_list"]:
            width, height = Image.open(images / entry["img_name"]).size
            low, high = tiny_data.DEFAULT_RESOLUTION
            assert low <= min(width, height) <= max(width, height) <= high
            assert entry["annotations"]
            for annotation in entry["annotations"]:
                assert set(annotation) == {"polygon", "text", "language"}
    manifest = read_json(corpus / "manifest.json")
    assert manifest["train"]["images"] == SMALL["num_images"]
    assert manifest["bench"]["instances"] == len(texts(read_json(corpus / "bench/test.json")))


def test_bench_words_and_images_never_occur_in_training(corpus):
    train, bench = read_json(corpus / "train.json"), read_json(corpus / "bench/test.json")
    assert not {t.casefold() for t in texts(train)} & {t.casefold() for t in texts(bench)}
    train_pixels = {np.asarray(Image.open(corpus / "images" / e["img_name"])).tobytes() for e in train["data_list"]}
    for entry in bench["data_list"]:
        assert np.asarray(Image.open(corpus / "bench/images" / entry["img_name"])).tobytes() not in train_pixels


def test_word_pools_are_disjoint_and_cover_the_lists():
    words = load_word_lists()
    train, bench = split_words(words, seed=5)
    for language in (LATIN, CHINESE):
        assert not set(train[language]) & set(bench[language])
        assert sorted(train[language] + bench[language]) == sorted(words[language])
        assert 0 < len(bench[language]) < len(train[language])


def test_disjointness_check_catches_a_shared_word():
    entry = {"img_name": "x.jpg", "annotations": [{"polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "text": "Apple",
                                                   "language": LATIN}]}
    other = {"img_name": "y.jpg", "annotations": [{**entry["annotations"][0], "text": "APPLE"}]}
    with pytest.raises(AssertionError, match="apple"):
        tiny_data.check_disjoint([entry], [other], {"x.jpg": "1"}, {"y.jpg": "2"})
    with pytest.raises(AssertionError, match="identical"):
        tiny_data.check_disjoint([entry], [{**other, "annotations": []}], {"x.jpg": "1"}, {"y.jpg": "1"})


def test_step2_is_a_smaller_subset_of_step1(corpus):
    train = {e["img_name"]: e["annotations"] for e in read_json(corpus / "train.json")["data_list"]}
    step2 = read_json(corpus / "step2.json")
    assert step2["data_list"], "no clean instance at all: the step-2 filter is too strict"
    for entry in step2["data_list"]:
        assert all(annotation in train[entry["img_name"]] for annotation in entry["annotations"])
    assert len(texts(step2)) < sum(len(a) for a in train.values())


def test_rerun_with_same_arguments_is_a_no_op(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    manifest = generate(corpus, **SMALL, build_lmdbs=True, progress=False)
    assert manifest["reused"] is True
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_cli_rerun_says_there_is_nothing_to_do(corpus, capsys):
    arguments = ["--out", str(corpus), "--num-images", "8", "--bench-images", "4", "--seed", "11"]
    assert tiny_data.main(arguments) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_other_arguments_on_an_existing_corpus_fail(corpus):
    with pytest.raises(DataError, match="delete it"):
        generate(corpus, **{**SMALL, "seed": 99}, build_lmdbs=True, progress=False)


def test_an_unfinished_corpus_is_redrawn(tmp_path):
    out = tmp_path / "tiny"
    generate(out, **FEW, build_lmdbs=False, progress=False)
    expected = files(out)
    (out / "manifest.json").unlink()
    (out / "images" / "tiny_000001.jpg").write_bytes(b"truncated")
    assert "reused" not in generate(out, **FEW, build_lmdbs=False, progress=False)
    assert files(out) == expected


def test_a_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a tiny corpus folder"):
        generate(tmp_path, **SMALL, build_lmdbs=False, progress=False)


def test_cli_reports_bad_arguments_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tiny_data.main(["--out", str(tmp_path / "x"), "--resolution", "300", "200"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--resolution" in error and "\n" not in error


def test_missing_font_package_is_named():
    source = FontSource("font-not-there", "font_not_there_xyz", "files/X.ttf", False)
    with pytest.raises(FontMissingError, match="pip install font-not-there"):
        FontBank([source])


def test_every_font_covers_its_words(fonts):
    fonts.check_coverage(load_word_lists())  # raises on a missing character
    assert len(fonts.paths) >= 8 and fonts.cjk


def test_bench_is_readable_by_ocr(tmp_path):
    """Issue 7's promise: PP-OCRv4 reads ≥ 80 % of the bench's own crops (cut at the polygons' bboxes)."""
    from textssr.eval.ocr import Recognizer

    generate(tmp_path, num_images=1, bench_images=12, seed=3, build_lmdbs=False, progress=False)
    bench = read_json(tmp_path / "bench/test.json")
    crops, targets = [], []
    for entry in bench["data_list"]:
        image = np.asarray(Image.open(tmp_path / "bench/images" / entry["img_name"]).convert("RGB"))
        for annotation in entry["annotations"]:
            (x0, y0), (x1, y1) = np.min(annotation["polygon"], 0), np.max(annotation["polygon"], 0)
            crops.append(image[y0:y1 + 1, x0:x1 + 1])
            targets.append(annotation["text"])
    readings = [text for text, _ in Recognizer(num_threads=1).recognize(crops)]
    accuracy = np.mean([r == t for r, t in zip(readings, targets)])
    assert len(targets) >= 15 and accuracy >= 0.8, list(zip(targets, readings))


def read_anyword_lmdb(folder):
    """{annotation JSON text: image bytes} over every sample of an AnyWord-lmdb folder tree (method.md §2)."""
    samples = {}
    for data_file in sorted(folder.rglob("data.mdb")):
        with lmdb.open(str(data_file.parent), readonly=True, lock=False) as env, env.begin() as txn:
            for key, value in txn.cursor():
                if key.startswith(b"annotations-"):
                    image = txn.get(b"image-" + key[len(b"annotations-"):])
                    for annotation in json.loads(value):
                        samples[json.dumps(annotation, sort_keys=True, ensure_ascii=False)] = image
    return samples


def test_step2_lmdb_content_is_inside_step1_lmdb(corpus):
    step1 = read_anyword_lmdb(corpus / "AnyWord-lmdb/step1_lmdb")
    step2 = read_anyword_lmdb(corpus / "AnyWord-lmdb/step2_lmdb")
    assert len(step1) == len(texts(read_json(corpus / "train.json")))
    assert 0 < len(step2) < len(step1)
    for annotation, image in step2.items():
        assert step1[annotation] == image


@pytest.mark.filterwarnings(FALLBACK_FONT_WARNING)
def test_lmdb_loads_in_the_training_dataset(corpus):
    from textssr.data import AnyWordLmdbDataset

    dataset = AnyWordLmdbDataset(str(corpus / "AnyWord-lmdb/step1_lmdb"))
    assert len(dataset) == len(texts(read_json(corpus / "train.json")))


@pytest.mark.filterwarnings(FALLBACK_FONT_WARNING)
def test_json_loads_in_the_data_layer_without_skips(corpus):
    from textssr.data import AnyWordDataset

    for name in ("train.json", "step2.json", "bench/test.json"):
        dataset = AnyWordDataset(str(corpus / name), resolution=64, strict=True)
        assert len(dataset) == len(texts(read_json(corpus / name)))
        sample = dataset[0]
        assert sample["image"].shape == (3, 64, 64) and 0 < float(sample["mask"].mean()) < 1
