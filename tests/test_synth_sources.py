"""synthesize.py from a folder of photos (PP-OCRv4 lines, stored, filtered by keys; bad photos skipped and counted)
or of ICDAR 2013/2015 annotations, with a small lexicon spread evenly: real photos (../shared/data), the real
detector, tiny random diffusion models, real subprocesses killed with SIGKILL."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from textssr.config import ConfigError
from textssr.data.icdar15 import parse_gt_line
from textssr.data.photos import (PHOTO_EMPTY, PHOTO_TOO_LARGE, PHOTO_TOO_SMALL, PHOTO_UNREADABLE, line_shape,
                                 list_photos, read_photo)
from textssr.data.skips import SkipSample
from textssr.eval.lines import LineFinder
from textssr.data.anyword import AnyWordDataset
from textssr.synth.regions import LINE_FILTERS, LineTally, PhotoRegions, detections_dir, region_source
from textssr.synth.runner import synthesize
from textssr.synth.settings import SynthSettings
from textssr.synth.str_lmdb import StrLmdbReader

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
PHOTOS = ("img_1.jpg", "img_3.jpg", "img_7.jpg")  # ICDAR 2015 photos with several legible lines each
LEXICON = ["EXIT", "SHOP", "HOTEL", "PARK", "CAFE"]
ONE_PROCESS = SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, icdar15_dir):
    """Tiny models and a folder of 3 real photos (no annotations beside them)."""
    from tiny_models import save_tiny_sd21
    root = tmp_path_factory.mktemp("sources")
    save_tiny_sd21(str(root / "model"))
    (root / "photos" / "more").mkdir(parents=True)
    for name in PHOTOS[:2]:
        shutil.copy(icdar15_dir / name, root / "photos" / name)
    # one in a sub-folder (photos are found recursively), as WebP
    Image.open(icdar15_dir / PHOTOS[2]).save(root / "photos" / "more" / PHOTOS[2].replace(".jpg", ".webp"))
    return root


def options(root, out, **extra):
    opts = dict(source=str(root / "photos"), output_dir=str(out), pretrained_vae=str(root / "model/vae"),
                pretrained_unet=str(root / "model/unet"), scheduler_path=str(root / "model/scheduler"),
                resolution=32, num_inference_steps=1, batch_size=2, variants_per_region=1, max_regions=None,
                text_source="lexicon", lexicon=LEXICON, lexicon_sampling="even", contact_sheet_size=4)
    opts.update(extra)
    return opts


def config(root, out, **extra):
    return SynthSettings.load(os.path.join(REPO, "configs/tiny/synth_cfg.py"), options(root, out, **extra))


def cli(root, out, **extra):
    args = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in options(root, out, **extra).items()]
    return [sys.executable, "synthesize.py", "--config", "configs/tiny/synth_cfg.py", "--cfg-options", *args]


def records(path):
    with StrLmdbReader(str(path)) as r:
        return [(x.image, x.label, x.meta["region"], x.meta["variant"]) for x in r]


@pytest.fixture(scope="module")
def baseline(setup):
    out = setup / "baseline"
    return out, synthesize(config(setup, out))


# ---------------------------------------------------------------------------------------------- photos end to end


def test_photos_become_regions_whose_texts_are_lexicon_words_spread_evenly(baseline):
    out, stats = baseline
    source = stats["source"]
    assert source["kind"] == "photos" and source["photos_found"] == source["photos_read"] == len(PHOTOS)
    assert source["lines_detected"] == source["lines_kept"] + sum(source["lines_removed"].values())
    skipped = sum(n for reason, n in stats["skipped_at_index"].items() if reason != "text_truncated")
    assert 0 < source["lines_kept"] == stats["regions_read"] + skipped
    labels = [label for _, label, _, _ in records(out / "lmdb")]
    assert labels and set(labels) <= set(LEXICON) and len(labels) == stats["num_samples"]
    counts = Counter(labels)
    assert max(counts.values()) - min(counts.get(w, 0) for w in LEXICON) <= 1  # no word twice before all once
    assert (out / "contact_sheet.png").is_file() and (out / "regions.json").is_file()


def test_the_contact_sheet_shows_the_real_line_beside_each_crop(baseline):
    from textssr.data.factory import open_dataset
    from textssr.synth.sheet import sheet_items
    out, _ = baseline
    with StrLmdbReader(str(out / "lmdb")) as r:
        recs = list(r)[:3]
    dataset = open_dataset(str(out / "regions.json"), resolution=32)
    items = sheet_items(recs, dataset)
    assert all(item.gt_crop is not None and item.gt_crop.shape[2] == 3 for item in items)
    assert all(item.ocr is not None for item in items)  # read by PP-OCRv4 when screening is off
    assert [item.gt_text for item in items] == [r.meta["source_text"] for r in recs]


def test_a_rerun_with_other_filter_keys_refilters_without_detecting(setup, baseline, monkeypatch):
    out, stats = baseline
    folder = detections_dir(config(setup, out))
    stamps = {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}
    assert len(stamps) == len(PHOTOS)
    monkeypatch.setattr(LineFinder, "detect", lambda *a, **k: pytest.fail("detected again"))
    cfg = config(setup, setup / "refiltered", detections_dir=folder, min_line_confidence=0.95)
    photos = PhotoRegions(cfg, ONE_PROCESS, region_source(cfg, ONE_PROCESS), AnyWordDataset((), resolution=32))
    assert photos.todo == []  # all stored: nothing to detect
    photos.drain()
    strict = photos.stats()
    assert strict["lines_detected"] == stats["source"]["lines_detected"]
    assert strict["lines_kept"] < stats["source"]["lines_kept"] == len(
        AnyWordDataset(str(out / "regions.json"), resolution=32)) + stats["skipped_at_index"].get("missing_glyph", 0)
    assert strict["lines_removed"]["min_line_confidence"] > stats["source"]["lines_removed"].get(
        "min_line_confidence", 0)
    assert {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)} == stamps


def test_a_changed_filter_key_is_refused_on_resume_of_the_same_output(setup, baseline):
    out, _ = baseline
    with pytest.raises(ConfigError, match="min_line_height"):
        synthesize(config(setup, out, min_line_height=40))


def test_photos_are_detected_beside_the_generation_and_give_the_same_set_either_way(setup, baseline, monkeypatch):
    """``detection="beside"``: the last photo's detection waits here until a batch is committed, so it can only go
    on when generation runs beside it. ``"first"``: every photo is detected before; the records are the same."""
    from textssr.synth import runner
    committed, seen = threading.Event(), []
    commit, detect = runner.ShardCommitter.__call__, LineFinder.detect

    def counted_commit(self, batch):
        commit(self, batch)
        committed.set()

    def slow_last(self, image, **kwargs):
        seen.append(1)
        if len(seen) == len(PHOTOS):
            seen.append(committed.wait(timeout=30))
        return detect(self, image, **kwargs)

    monkeypatch.setattr(runner.ShardCommitter, "__call__", counted_commit)
    monkeypatch.setattr(LineFinder, "detect", slow_last)
    stats = synthesize(config(setup, setup / "overlapped", detection="beside"))
    assert seen[-1] is True, "no batch was committed while the last photo was being detected"
    assert stats["detection_wait_s"] >= 0 and records(setup / "overlapped" / "lmdb") == records(baseline[0] / "lmdb")
    monkeypatch.setattr(LineFinder, "detect", detect)
    synthesize(config(setup, setup / "sequential", detection="first"))
    assert records(setup / "sequential" / "lmdb") == records(baseline[0] / "lmdb")


def test_max_regions_stops_reading_photos_once_its_regions_are_numbered(setup, baseline):
    out = setup / "few"
    stats = synthesize(config(setup, out, max_regions=2, detection="beside"))
    source = stats["source"]
    assert stats["regions_read"] == 2 and source["photos_beyond_max_regions"] >= 1
    assert source["photos_read"] + source["photos_beyond_max_regions"] == source["photos_found"] == len(PHOTOS)
    assert len([n for n in os.listdir(out / "detections") if n.endswith(".json")]) < len(PHOTOS)
    assert records(out / "lmdb") == [r for r in records(baseline[0] / "lmdb") if r[2] < 2]


# ---------------------------------------------------------------------------------------------- filter keys


def box(width, height, angle=0.0, x=10.0, y=10.0):
    """A detector-style quadrilateral (clockwise from the top-left) of a width × height line turned by angle°."""
    a = np.radians(angle)
    along, across = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    corners = [np.zeros(2), width * along, width * along + height * across, height * across]
    return [[float(x + c[0]), float(y + c[1])] for c in corners]


LINES = {  # the line each key removes (with the values of `STRICT`), all others kept
    "min_line_confidence": dict(text="SALE", confidence=0.3, polygon=box(100, 24)),
    "min_line_height": dict(text="SALE", confidence=0.9, polygon=box(100, 10)),
    "min_line_aspect": dict(text="SALE", confidence=0.9, polygon=box(20, 40)),
    "max_line_aspect": dict(text="SALE", confidence=0.9, polygon=box(900, 24)),
    "max_line_angle": dict(text="SALE", confidence=0.9, polygon=box(100, 24, angle=40)),
    "language": dict(text="咖啡店", confidence=0.9, polygon=box(100, 24)),
    "line_chars": dict(text="SALE-50%", confidence=0.9, polygon=box(100, 24)),
}
KEEP = dict(text="OPEN", confidence=0.9, polygon=box(100, 24, angle=10))
STRICT = dict(min_line_confidence=0.5, min_line_height=16, min_line_aspect=1.0, max_line_aspect=20.0,
              max_line_angle=30.0, language="Latin", line_chars="[^-%]+")
LOOSE = dict(min_line_confidence=0.0, min_line_height=1, min_line_aspect=0.0, max_line_aspect=None,
             max_line_angle=90.0, language=None, line_chars=None)


def test_the_line_shape_is_height_aspect_and_angle():
    height, aspect, angle = line_shape(box(120, 30, angle=-25))
    assert (round(height, 6), round(aspect, 6), round(angle, 6)) == (30, 4, 25)


def tally(record, cfg):
    """(the photo's AnyWord entry, the counts) of one detection record under ``cfg``'s filter keys."""
    lines = LineTally(cfg)
    return lines.add(record), lines.stats()


@pytest.mark.parametrize("key", LINE_FILTERS)
def test_each_filter_key_removes_its_lines_and_counts_them_under_its_name(setup, key):
    record = dict(photo="a.jpg", lines=[KEEP] + list(LINES.values()))
    entry, stats = tally(record, config(setup, setup / "unused", **dict(LOOSE, **{key: STRICT[key]})))
    kept = [a["text"] for a in entry["annotations"]]
    removed_text = LINES[key]["text"]
    assert stats["lines_removed"] == {key: 1} and stats["lines_kept"] == len(LINES)
    assert kept.count(removed_text) == [line["text"] for line in LINES.values()].count(removed_text) - 1
    _, loose = tally(record, config(setup, setup / "unused", **LOOSE))
    assert loose["lines_removed"] == {} and loose["lines_kept"] == len(LINES) + 1


def test_all_filters_together_count_each_line_once(setup):
    record = dict(photo="a.jpg", lines=[KEEP] + list(LINES.values()))
    _, stats = tally(record, config(setup, setup / "unused", **STRICT))
    assert stats["lines_removed"] == {key: 1 for key in LINE_FILTERS} and stats["lines_kept"] == 1


def test_a_folder_without_photos_is_one_line_naming_what_it_may_hold(setup, tmp_path, capsys):
    sys.path.insert(0, REPO)
    from synthesize import main
    (tmp_path / "notes.txt").write_text("no photo here")
    with pytest.raises(SystemExit) as exc:
        main(cli(setup, tmp_path / "out", source=str(tmp_path))[2:])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].startswith("error: ") and "holds no photo" in err[-1]


def test_filter_keys_are_checked_at_start_up(setup):
    for key, value in (("min_line_confidence", 1.5), ("max_line_angle", 91), ("line_chars", "[A-Z"),
                       ("min_line_height", 0)):
        with pytest.raises(ConfigError, match=key):
            config(setup, setup / "unused", **{key: value})


# ---------------------------------------------------------------------------------------------- bad photos


def make_bad_photos(folder, good):
    """The five kinds of photo that cannot serve, beside ``good``; returns {file: reason}."""
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "not_an_image.png").write_text("this is a text file, not a PNG\n")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "one_pixel.png")
    Image.new("L", (12000, 9000), 200).save(folder / "huge.jpg", quality=30)
    return {"truncated.jpg": PHOTO_UNREADABLE, "empty.jpg": PHOTO_EMPTY, "not_an_image.png": PHOTO_UNREADABLE,
            "one_pixel.png": PHOTO_TOO_SMALL, "huge.jpg": PHOTO_TOO_LARGE}


def test_each_kind_of_bad_photo_is_refused_with_its_reason(tmp_path, icdar15_dir):
    bad = make_bad_photos(tmp_path, icdar15_dir / PHOTOS[0])
    for name, reason in bad.items():
        with pytest.raises(SkipSample) as exc:
            read_photo(str(tmp_path / name), min_side=32, max_pixels=50_000_000)
        assert exc.value.reason == reason, name
    assert read_photo(str(icdar15_dir / PHOTOS[0]), 32, 50_000_000).shape == (720, 1280, 3)


def test_bad_photos_are_skipped_and_counted_and_the_run_goes_on(setup, tmp_path, icdar15_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(icdar15_dir / PHOTOS[0], folder / PHOTOS[0])
    bad = make_bad_photos(folder, icdar15_dir / PHOTOS[0])
    assert len(list_photos(str(folder))) == 1 + len(bad)
    stats = synthesize(config(setup, tmp_path / "out", source=str(folder)))
    source = stats["source"]
    assert source["photos_found"] == 6 and source["photos_read"] == 1
    assert source["photos_skipped"] == dict(Counter(bad.values()))
    assert sorted(source["photos_skipped_detail"]) == sorted(bad)
    assert stats["num_samples"] > 0
    with pytest.raises(SkipSample):  # strict=True: the first bad photo stops the run
        synthesize(config(setup, tmp_path / "strict", source=str(folder), strict=True))


# ---------------------------------------------------------------------------------------------- resume


def wait_then_kill(proc, ready) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False when it ended first."""
    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    return False


def test_sigkill_during_detection_then_resume_detects_only_the_rest(setup, baseline):
    out = setup / "killed_detecting"
    folder = out / "detections"
    proc = subprocess.Popen(cli(setup, out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed = wait_then_kill(proc, lambda: folder.is_dir() and 1 <= len(
        [n for n in os.listdir(folder) if n.endswith(".json")]) < len(PHOTOS))
    assert killed, "the run ended before it could be killed while detecting"
    before = {n: os.stat(folder / n).st_mtime_ns for n in os.listdir(folder) if n.endswith(".json")}
    assert not (out / "lmdb").exists()
    resumed = subprocess.run(cli(setup, out), cwd=REPO, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert {n: os.stat(folder / n).st_mtime_ns for n in before} == before  # not detected again
    assert records(out / "lmdb") == records(baseline[0] / "lmdb")


def test_sigkill_during_generation_then_resume_gives_the_uninterrupted_set(setup, baseline):
    out = setup / "killed_generating"

    def mid_generation():
        if not (out / "lmdb/data.mdb").is_file():
            return False
        with StrLmdbReader(str(out / "lmdb")) as r:
            state = r.state
        return bool(state) and 0 < state["cursor"] and not state["done"]

    command = cli(setup, out, detections_dir=str(baseline[0] / "detections"))  # detected already: generation at once
    proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_then_kill(proc, mid_generation), "the run ended before it could be killed while generating"
    resumed = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert records(out / "lmdb") == records(baseline[0] / "lmdb")
    assert json.loads((out / "stats.json").read_text())["source"] == baseline[1]["source"]


# ---------------------------------------------------------------------------------------------- ICDAR


def test_icdar_lines_of_both_years_parse():
    assert parse_gt_line('38, 43, 920, 215, "Tiredness"') == ([[38, 43], [920, 43], [920, 215], [38, 215]],
                                                               "Tiredness")
    assert parse_gt_line('275 135 348 175 "a, b"')[1] == "a, b"
    assert parse_gt_line("377,117,463,117,465,130,378,130,Genaxis Theatre")[1] == "Genaxis Theatre"
    assert parse_gt_line("1,2,3") is None


def test_an_icdar_folder_is_read_directly_with_dont_care_words_left_out(setup, icdar15_dir, capsys):
    out = setup / "icdar"
    lexicon = LEXICON + ["नमस्ते", "😀SALE"]
    stats = synthesize(config(setup, out, source=str(icdar15_dir), lexicon=lexicon))
    # words the font cannot draw: one line each, counted, and never a target
    assert stats["lexicon_dropped"] == 2 and sorted(stats["lexicon_left_out"]) == ["नमस्ते", "😀SALE"]
    assert all(why.startswith("missing_glyph") for why in stats["lexicon_left_out"].values())
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("lexicon word")] == [
        f"lexicon word {w!r} left out: {why}" for w, why in stats["lexicon_left_out"].items()]
    assert stats["source"] == dict(kind="icdar", images=10, words=21, left_out={"dont_care": 61})
    assert stats["regions_read"] + sum(n for reason, n in stats["skipped_at_index"].items()
                                       if reason != "text_truncated") == 21
    assert {label for _, label, _, _ in records(out / "lmdb")} <= set(LEXICON)


def test_two_processes_share_the_detection_and_build_the_single_process_set(setup, baseline):
    """Rank r detects photos r, r+2, …; both ranks then build the same regions: the merged set is the one-process
    set (texts, order; pixels may differ only through batch make-up), with the same source counts."""
    out = setup / "two_processes"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    run = subprocess.run([*launch, *cli(setup, out)[1:]], cwd=REPO, env=dict(ENV, ACCELERATE_USE_CPU="true"),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len([n for n in os.listdir(out / "detections") if n.endswith(".json")]) == len(PHOTOS)
    assert [r[1:] for r in records(out / "lmdb")] == [r[1:] for r in records(baseline[0] / "lmdb")]
    stats = json.loads((out / "stats.json").read_text())
    same = ("photos_found", "photos_read", "lines_detected", "lines_kept", "lines_removed")
    assert stats["processes"] == 2 and {k: stats["source"][k] for k in same} == {
        k: baseline[1]["source"][k] for k in same}
