"""edit.py on a real ICDAR 2015 photo with tiny random models (save_tiny_sd21, 32 px, 1 step): the whole photo comes
back, bit-exact outside the edited area and changed inside it, deterministic under the seed; --find and --list with
PP-OCRv4 on the real photo; bad inputs are one-line errors (exit status 2) found before any model loads."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from textssr.config.checks import run_script
from textssr.edit import DILATE_PX, composite, edited_area, parse_polygon_arg, read_photo
from textssr.edit.command import main
from textssr.edit.lines import MIN_NED, TextLine, best_line
from textssr.edit.region import blend_weight, edit_window

from edit_fixtures import CARPARK, GENAXIS, model_options, models, outside_box, photo_path, text_area  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")


def edit(capsys, *argv):
    """edit.py's main in this process, as the script runs it: (exit status, stdout, stderr)."""
    code = 0
    try:
        code = run_script(lambda: main(list(argv)), resumable=False)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def edited(models, photo_path, tmp_path_factory):
    """One edit of "Genaxis Theatre" through the real script (a subprocess): (photo, output path, stdout)."""
    out = tmp_path_factory.mktemp("out") / "edited.png"
    cmd = [sys.executable, str(REPO / "edit.py"), "--image", photo_path, "--polygon", GENAXIS, "--text", "Hello World",
           "--out", str(out)] + model_options(models)
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return read_photo(photo_path), out, done.stdout


def test_output_is_the_whole_photo(edited):
    photo, out, stdout = edited
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape == photo.shape and result.dtype == np.uint8
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in stdout and "1280x720" in stdout


def test_pixels_outside_the_text_area_are_identical_inside_changed(edited):
    photo, out, _ = edited
    result = cv2.imread(str(out))
    polygon = parse_polygon_arg(GENAXIS)
    changed = (result != photo).any(axis=2)
    assert not changed[outside_box(photo.shape, polygon, DILATE_PX + 1)].any()  # bit for bit, independent bound
    area = edited_area(photo.shape, polygon, edit_window(photo, polygon), DILATE_PX)
    assert not changed[~area].any()  # and exactly the documented area
    inside = text_area(photo.shape, polygon)
    diff = np.abs(result.astype(int) - photo.astype(int))[inside]
    assert diff.mean() > 10 and changed[inside].mean() > 0.9


def test_same_seed_same_bytes_other_seed_other_pixels(capsys, models, photo_path, edited, tmp_path):
    _, first, _ = edited
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    for out, seed in ((again, 3407), (other, 7)):
        code, _, err = edit(capsys, "--image", photo_path, "--polygon", GENAXIS, "--text", "Hello World", "--out",
                            str(out), *model_options(models, seed=seed))
        assert code == 0, err
    assert again.read_bytes() == first.read_bytes()
    inside = text_area((720, 1280), parse_polygon_arg(GENAXIS))
    assert (cv2.imread(str(other)) != cv2.imread(str(first)))[inside].any()


def test_variants_and_several_edits(capsys, models, photo_path, tmp_path):
    """Two regions applied in turn, two variants: <out>_v0.png and _v1.png, each changed in both regions only."""
    out = tmp_path / "two.png"
    code, stdout, err = edit(capsys, "--image", photo_path, "--polygon", GENAXIS, "--text", "Hello",
                             "--polygon", CARPARK, "--text", "Parking", "--num-variants", "2", "--out", str(out),
                             *model_options(models))
    assert code == 0, err
    assert stdout.count("repainted") == 2
    photo = read_photo(photo_path)
    polygons = [parse_polygon_arg(GENAXIS), parse_polygon_arg(CARPARK)]
    outside = np.logical_and(*(outside_box(photo.shape, p, DILATE_PX + 1) for p in polygons))
    results = [cv2.imread(str(tmp_path / f"two_v{k}.png")) for k in range(2)]
    assert not out.exists()
    for result in results:
        assert result.shape == photo.shape and (result == photo)[outside].all()
        for polygon in polygons:
            assert (result != photo).any(axis=2)[text_area(photo.shape, polygon)].mean() > 0.9
    assert (results[0] != results[1]).any()


def test_find_repaints_the_line_the_ocr_reads(capsys, models, photo_path, tmp_path):
    out = tmp_path / "found.png"
    code, stdout, err = edit(capsys, "--image", photo_path, "--find", "Carpark", "--text", "Parking", "--out",
                             str(out), *model_options(models))
    assert code == 0, err
    found = stdout.split(" at ")[1].split()[0]  # "--find 'Carpark': 'Carpark' (NED 1.00, ...) at x1,y1,..."
    polygon = parse_polygon_arg(found)
    truth = parse_polygon_arg(CARPARK)
    assert np.abs(polygon.mean(axis=0) - truth.mean(axis=0)).max() < 5  # the detector found the annotated word
    photo, result = read_photo(photo_path), cv2.imread(str(out))
    assert (result == photo)[outside_box(photo.shape, polygon, DILATE_PX + 1)].all()
    assert (result != photo).any(axis=2)[text_area(photo.shape, truth)].mean() > 0.9


def test_exif_rotation_is_ignored(capsys, models, photo_path, tmp_path):
    """A JPEG whose EXIF says "rotate 90°" is edited in its raw pixel orientation, as the annotations have it."""
    from PIL import Image
    rotated = tmp_path / "exif6.jpg"
    image = Image.open(photo_path)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    image.save(rotated, quality=95, exif=exif.tobytes())
    out = tmp_path / "exif6.png"
    code, _, err = edit(capsys, "--image", str(rotated), "--polygon", GENAXIS, "--text", "Hi", "--out", str(out),
                        *model_options(models))
    assert code == 0, err
    assert cv2.imread(str(out)).shape == read_photo(str(rotated)).shape == (720, 1280, 3)


def test_list_prints_lines_with_polygons_to_copy(capsys, photo_path):
    code, stdout, _ = edit(capsys, "--list", photo_path)
    assert code == 0
    rows = [line.split("\t") for line in stdout.strip().splitlines()]
    readings = {text.strip("'"): polygon for text, _, polygon in rows}
    assert "Carpark" in readings
    parse_polygon_arg(readings["Carpark"])  # what --polygon takes
    assert all(0 <= float(confidence) <= 1 for _, confidence, _ in rows)


def test_find_without_a_good_match_lists_what_was_read():
    lines = [TextLine("Genexis Theatre", 0.92, np.zeros((4, 2))), TextLine("THEATRE", 0.8, np.zeros((4, 2)))]
    assert best_line(lines, "genaxis theatre").text == "Genexis Theatre"  # case folded, one letter off
    with pytest.raises(Exception) as caught:
        best_line(lines, "Zebra crossing")
    message = str(caught.value)
    assert "\n" not in message and "'Zebra crossing'" in message and "'Genexis Theatre' 0." in message
    assert f"NED >= {MIN_NED}" in message


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load the pipeline fails the test: bad input must be refused before that."""
    import textssr.edit.editor as editor

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the input was checked")

    monkeypatch.setattr(editor, "load_pipeline", refuse)


@pytest.mark.parametrize("args, expected", [
    (["--polygon", "1377,117,1463,117,1465,130,1378,130", "--text", "X"], "outside the 1280x720 photo"),
    (["--polygon", "377,117,463,117,465,130", "--text", "X"], "at least 4 corners"),
    (["--polygon", "1,1,2,2,3,3,4,4", "--text", "X"], "encloses no area"),
    (["--polygon", "377,117,463,abc,465,130,378,130", "--text", "X"], "not a number"),
    (["--polygon", "377,117,377.3,117,377.3,117.3,377,117.3", "--text", "X"], "too small"),
    (["--polygon", GENAXIS, "--text", ""], "text is empty"),
    (["--polygon", GENAXIS, "--text", "a\nb"], "control characters"),
    (["--polygon", GENAXIS, "--text", "\U0001F600"], "has no"),
    (["--polygon", GENAXIS], "1 region(s) but 0 --text"),
    (["--text", "X"], "no region given"),
    (["--polygon", GENAXIS, "--text", "X", "--out", "edited.xyz"], "cannot write .xyz"),
    (["--polygon", GENAXIS, "--text", "X", "--num-variants", "0"], "num_variants=0"),
])
def test_bad_input_is_one_line_error_before_models_load(capsys, models, photo_path, no_model_loads, args,
                                                        expected):
    code, _, err = edit(capsys, "--image", photo_path, *args, *model_options(models))
    lines = [line for line in err.splitlines() if "Warning" not in line and not line.startswith("  ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


@pytest.mark.parametrize("options, expected", [
    (dict(resolution=4096), "resolution=4096 is more than 4x from the UNet's training value 64"),
    (dict(resolution=4096, allow_far_resolution=True), "resolution=4096 with num_variants="),
])
def test_sizes_that_cannot_fit_are_refused_before_models_load(capsys, models, photo_path, no_model_loads, options,
                                                              expected):
    """4096 px on models trained at 64 used to grow until the kernel killed the process."""
    code, _, err = edit(capsys, "--image", photo_path, "--polygon", GENAXIS, "--text", "X", "--num-variants", "16",
                        *model_options(models, **options))
    lines = [line for line in err.splitlines() if "Warning" not in line and not line.startswith("  ")]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert "GiB" in lines[0] or "allow_far_resolution=True" in lines[0]


def test_a_text_longer_than_max_len_is_said_to_be_cut(capsys, models, photo_path, tmp_path):
    text = "Supercalifragilistic Theatre"  # 28 characters; the tiny UNet encodes 25
    code, out, err = edit(capsys, "--image", photo_path, "--polygon", GENAXIS, "--text", text,
                          "--out", str(tmp_path / "long.png"), *model_options(models))
    assert code == 0, err
    assert f"note: text {text!r} has 28 characters; the model encodes only the first 25 (max_len)" in out


def test_missing_or_unreadable_photo_is_one_line_error(capsys, models, tmp_path, no_model_loads):
    (tmp_path / "notes.jpg").write_text("not a photo")
    for path, expected in ((tmp_path / "missing.jpg", "no such file"), (tmp_path / "notes.jpg", "not a decodable")):
        code, _, err = edit(capsys, "--image", str(path), "--polygon", GENAXIS, "--text", "X", *model_options(models))
        assert code == 2 and err.startswith(f"error: image {path}: {expected}") and err.count("\n") == 1, err


def test_the_window_is_built_as_infer_builds_a_bench_instance(photo_path, tmp_path):
    """The sample edit.py feeds the model equals the dataset's centre-placement sample of the same annotation."""
    import json
    import warnings

    import torch

    from textssr.data import AnyWordDataset
    from textssr.edit.region import build_sample
    polygon = parse_polygon_arg(GENAXIS)
    bench = {"data_root": str(Path(photo_path).parent), "data_list": [
        {"img_name": Path(photo_path).name, "annotations": [{"polygon": polygon.tolist(), "text": "Hello"}]}]}
    (tmp_path / "bench.json").write_text(json.dumps(bench), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = AnyWordDataset(str(tmp_path / "bench.json"), resolution=32, region_placement="center")
    expected = dataset.build(0)
    sample, window = build_sample(read_photo(photo_path), polygon, "Hello", resolution=32, ttf_size=64, max_len=25,
                                  font_path=dataset.font_path)
    assert window == edit_window(read_photo(photo_path), polygon)
    for key in ("image", "mask", "masked_image", "glyph", "ttf_img"):
        assert torch.equal(sample[key], expected[key]), key


def test_composite_touches_only_the_edited_area(photo_path):
    """Pure compositing: weight 0 outside the dilated polygon, 1 on the text; dilate=0 pastes the polygon exactly."""
    photo = read_photo(photo_path)
    polygon = parse_polygon_arg(GENAXIS)
    window = edit_window(photo, polygon)
    region = np.full((32, 32, 3), (255, 0, 0), np.uint8)  # pure red, RGB
    for dilate in (0, DILATE_PX):
        result = composite(photo, window, region, polygon, dilate)
        area = edited_area(photo.shape, polygon, window, dilate)
        assert (result == photo)[~area].all()
        weight = blend_weight(polygon, window, dilate)
        assert weight.min() == 0 and weight.max() == 1
    hard = composite(photo, window, region, polygon, 0)
    x0, y0, x1, y1 = window
    core = blend_weight(polygon, window, 0) == 1
    assert (hard[y0:y1, x0:x1][core] == (0, 0, 255)).all()  # BGR red
