"""infer.py end to end on tiny random SD-2.1-shaped models (save_tiny_sd21) at 32 px, 1 denoising step:
output layout and counts, stable numbering, determinism, resume, bad bench entries, config errors."""
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from textssr.infer.settings import InferSettings
from textssr.config import ConfigError, load_config
from textssr.infer import NothingGenerated, run_inference

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
IMAGES = 3  # ic13 images 1..3 of the mini bench: 6 + 1 + 4 = 11 instances (the first image is long-worded)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, bench_mini_dir):
    """Tiny models, and a bench laid out as the authors publish it: <root>/benchmark/ic13/{test.json, images}
    with the relative data_root ./benchmark/ic13/images (images linked from the shared mini bench)."""
    from tiny_models import save_tiny_sd21
    root = tmp_path_factory.mktemp("infer")
    save_tiny_sd21(str(root / "model"))
    shared = bench_mini_dir / "benchmark/ic13"
    bench = json.loads((shared / "test.json").read_text(encoding="utf-8"))
    folder = root / "bench_root/benchmark/ic13"
    folder.mkdir(parents=True)
    (folder / "images").symlink_to(shared / "images", target_is_directory=True)
    subset = dict(bench, data_list=bench["data_list"][1:1 + IMAGES])
    (folder / "test.json").write_text(json.dumps(subset, ensure_ascii=False), encoding="utf-8")
    return root


def options(root, out, **extra):
    opts = dict(bench=str(root / "bench_root/benchmark/ic13/test.json"), output_dir=str(out),
                pretrained_vae=str(root / "model/vae"), pretrained_unet=str(root / "model/unet"),
                scheduler_path=str(root / "model"), resolution=32, num_inference_steps=1, batch_size=4,
                device="cpu", mixed_precision="no")
    opts.update(extra)
    return opts


def config(root, out, **extra):
    return InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), options(root, out, **extra))


def run_in(cwd, cfg):
    """run_inference from ``cwd`` (relative data_root is resolved from the working directory)."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return run_inference(cfg)
    finally:
        os.chdir(before)


def files(out):
    """{sub/name: bytes} of every image in an output folder."""
    return {f"{sub}/{p.name}": p.read_bytes() for sub in ("local", "region", "gt")
            for p in sorted((Path(out) / sub).iterdir())}


def assert_same_images(out, reference):
    """The same files; real crops (gt/) byte-identical, generated ones within 1 gray level."""
    new, old = files(out), files(reference)
    assert new.keys() == old.keys()
    for key in new:
        if key.startswith("gt/"):
            assert new[key] == old[key], key
        else:
            a, b = (np.asarray(Image.open(io.BytesIO(x)), dtype=int) for x in (new[key], old[key]))
            assert a.shape == b.shape and np.abs(a - b).max() <= 1, key


def bench_texts(root):
    bench = json.loads((root / "bench_root/benchmark/ic13/test.json").read_text(encoding="utf-8"))
    return [a["text"] for entry in bench["data_list"] for a in entry["annotations"]]


@pytest.fixture(scope="module")
def baseline(tiny):
    """One run from the bench's own folder, as the original runs (relative data_root from the cwd)."""
    out = tiny / "baseline"
    meta = run_in(tiny / "bench_root", config(tiny, out, bench="benchmark/ic13/test.json"))
    return out, meta


def test_writes_every_file_with_matching_counts(tiny, baseline):
    out, meta = baseline
    texts = bench_texts(tiny)
    labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    instances = json.loads((out / "instances.json").read_text(encoding="utf-8"))
    assert list(labels) == [f"{i}.png" for i in range(len(texts))]  # every instance, numbered in bench order
    assert list(labels.values()) == texts
    assert [r["file"] for r in instances] == list(labels)
    assert all(r["language"] and r["img_name"] and r["ann_index"] >= 0 for r in instances)
    for sub in ("local", "region", "gt"):
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(labels)
    for name in labels:
        local, region, gt = (Image.open(out / sub / name) for sub in ("local", "region", "gt"))
        assert local.size == (32, 32) and local.mode == "RGB"
        assert region.size == gt.size and 0 < region.width <= 32 and 0 < region.height <= 32
    saved = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(meta, default=str))
    assert saved["complete"] and saved["counts"]["written"] == saved["counts"]["generated"] == len(texts)
    assert saved["skipped"] == {} and saved["crops_per_s"] > 0 and saved["seed"] == 3407
    assert saved["checkpoints"]["unet"].endswith("unet") and saved["versions"]["torch"]
    recorded = json.loads((out / "settings.json").read_text(encoding="utf-8"))  # the run's settings, as data
    assert saved["scheduler"]["name"] == "ddim" and recorded["resolution"] == 32  # configs/tiny/infer_cfg.py
    assert saved["scheduler"]["config"]["timestep_spacing"] == "trailing"


def test_region_is_the_text_bbox_cut_of_local(baseline):
    """region/ is local/ cut to the bbox of the mask's 0-pixels: it appears inside local/ at some offset."""
    out, _ = baseline
    local = np.asarray(Image.open(out / "local/0.png"))
    region = np.asarray(Image.open(out / "region/0.png"))
    h, w = region.shape[:2]
    hits = [(y, x) for y in range(33 - h) for x in range(33 - w) if np.array_equal(local[y:y + h, x:x + w], region)]
    assert hits


def test_same_images_from_another_directory_and_batch_size(tiny, baseline):
    """Run from elsewhere (data_root found beside the JSON) with another batch size: the same images — the
    real crops byte-identical, the generated ones within 1 gray level (a batch's make-up changes the float
    summation order of CPU convolutions)."""
    out = tiny / "elsewhere"
    run_in(tiny, config(tiny, out, batch_size=3))
    assert_same_images(out, baseline[0])


def test_resume_regenerates_only_missing_items(tiny, baseline):
    out = tiny / "resume"
    shutil.copytree(baseline[0], out)
    for sub, name in (("region", "2.png"), ("local", "5.png"), ("gt", "7.png"), ("local", "7.png")):
        (out / sub / name).unlink()
    (out / "region/9.png.tmp").write_bytes(b"half a png")  # what a kill mid-write would leave
    (out / "labels.json").unlink()
    kept = {p: p.stat().st_mtime_ns for sub in ("local", "region", "gt") for p in (out / sub).glob("*.png")
            if p.name not in ("2.png", "5.png", "7.png")}
    meta = run_in(tiny, config(tiny, out))
    assert meta["counts"]["generated"] == 3 and meta["counts"]["kept_from_previous"] == len(bench_texts(tiny)) - 3
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished items untouched
    assert_same_images(out, baseline[0])  # the regenerated ones as the first time (other batches: ±1 gray level)
    assert not list(out.glob("*/*.tmp"))
    assert (out / "labels.json").read_bytes() == (baseline[0] / "labels.json").read_bytes()


def test_resume_with_other_settings_is_refused(tiny, baseline):
    out = tiny / "changed"
    shutil.copytree(baseline[0], out)
    with pytest.raises(ConfigError, match="seed"):
        run_in(tiny, config(tiny, out, seed=1))


def write_bad_bench(root, bench_mini_dir):
    """Two good instances around three bad ones: empty text, missing image, degenerate polygon."""
    bench = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    good = bench["data_list"][2]  # one word
    word = good["annotations"][0]
    data = {"data_root": str(bench_mini_dir / "benchmark/ic13/images"), "data_list": [
        dict(good, annotations=[word, dict(word, text="")]),
        {"img_name": "no_such_image.jpg", "annotations": [word]},
        dict(good, annotations=[dict(word, polygon=[[10, 10], [10, 10], [10, 10], [10, 10]]), word]),
    ]}
    path = root / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_bad_entries_are_skipped_counted_and_leave_gaps(tiny, bench_mini_dir, capsys):
    bench = write_bad_bench(tiny, bench_mini_dir)
    out = tiny / "bad"
    meta = run_in(tiny, config(tiny, out, bench=str(bench)))
    labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert list(labels) == ["0.png", "4.png"]  # instances 1 (empty text), 2 (missing image), 3 (degenerate) skipped
    assert meta["counts"]["skipped"] == 3 and sum(meta["skipped"].values()) == 3
    assert len(meta["skipped"]) == 3  # three different reasons
    assert json.loads((out / "meta.json").read_text())["skipped"] == meta["skipped"]


def test_strict_raises_on_the_first_bad_entry(tiny, bench_mini_dir):
    from textssr.data import SkipSample
    bench = write_bad_bench(tiny, bench_mini_dir)
    with pytest.raises(SkipSample):
        run_in(tiny, config(tiny, tiny / "strict", bench=str(bench), strict=True))


def test_nothing_generated_is_an_error(tiny, bench_mini_dir):
    bench = tiny / "all_bad.json"
    square = [[0, 0], [90, 0], [90, 90], [0, 90]]
    bench.write_text(json.dumps({"data_root": str(bench_mini_dir / "benchmark/ic13/images"), "data_list": [
        {"img_name": "img_1.jpg", "annotations": [{"polygon": square, "text": ""}]},
        {"img_name": "no_such_image.jpg", "annotations": [{"polygon": square, "text": "A"}]}]}))
    with pytest.raises(NothingGenerated):
        run_in(tiny, config(tiny, tiny / "all_bad", bench=str(bench)))


def cli(args, cwd=REPO):
    return subprocess.run([sys.executable, str(REPO / "infer.py"), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True)


def test_config_mistake_is_one_line_and_exit_2(tiny):
    opts = dict(options(tiny, tiny / "never"), bench="/no/such/test.json")
    run = cli(["--config", "configs/tiny/infer_cfg.py", "--cfg-options", *[f"{k}={v}" for k, v in opts.items()]])
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "bench: path not found: /no/such/test.json" in run.stderr
    assert not (tiny / "never").exists()


@pytest.mark.parametrize("key, value, message", [
    ("pretrained_unet", "/no/such/unet", "pretrained_unet: path not found"),
    ("bench", "/", "bench: folder / holds no test.json"),
    ("scheduler", "nope", "scheduler='nope'"),
    ("mixed_precision", "fp16", "needs a GPU"),
    ("region_placement", "left", "region_placement"),
    ("timestep_spacing", "middle", "timestep_spacing='middle'"),
])
def test_bad_values_fail_before_models_load(tiny, key, value, message):
    with pytest.raises(ConfigError, match=message):
        run_inference(config(tiny, tiny / "never", **{key: value}))
    assert not (tiny / "never").exists()


def test_cli_prints_summary(tiny, baseline):
    out = tiny / "cli"
    shutil.copytree(baseline[0], out)
    (out / "local/1.png").unlink()
    run = cli(["--config", "configs/tiny/infer_cfg.py", "--cfg-options",
               *[f"{k}={v}" for k, v in options(tiny, out).items()]])
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{len(bench_texts(tiny))} crops in {out}" in run.stdout and "1 generated now" in run.stdout


def test_training_output_folder_gives_checkpoint_sizes_and_scheduler(tiny, bench_mini_dir):
    """pretrained_unet = a training output folder: the latest checkpoint's unet/, its config.py (resolution) and
    its scheduler/ are used; ttf_size/max_len come from the UNet's TTF encoder (the tiny config leaves all None)."""
    from textssr.models import load_unet
    run_dir = tiny / "step2"
    for step, resolution in ((3, 64), (5, 32)):
        checkpoint = run_dir / f"checkpoint-{step}"
        load_unet(str(tiny / "model/unet")).save_pretrained(str(checkpoint / "unet"))
        shutil.copytree(tiny / "model/scheduler", checkpoint / "scheduler")
        # a checkpoint's config.py is read as data: its code never runs (a downloaded checkpoint could hold any)
        (checkpoint / "config.py").write_text(f"import os\nos.system('touch {tiny}/pwned')\n"
                                              f"resolution = {resolution}\nseed = 1\n")
    cfg = InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), dict(
        bench=str(tiny / "bench_root/benchmark/ic13/test.json"), output_dir=str(tiny / "from_run"),
        pretrained_vae=str(tiny / "model"), pretrained_unet=str(run_dir), num_inference_steps=1, device="cpu"))
    assert cfg.resolution is None and cfg.scheduler_path is None and cfg.ttf_size is None
    meta = run_in(tiny, cfg)
    assert meta["conditions"] == dict(resolution=32, ttf_size=64, max_len=25)
    assert meta["checkpoints"]["unet"] == str(run_dir / "checkpoint-5/unet")
    assert meta["checkpoints"]["scheduler"] == str(run_dir / "checkpoint-5/scheduler")
    assert Image.open(tiny / "from_run/local/0.png").size == (32, 32)
    assert not (tiny / "pwned").exists()


def keyed(out, name):
    return Image.open(out / "local" / name).text.get("textssr-instance")


def test_rerun_after_the_bench_changed_regenerates_exactly_the_changed_items(tiny, baseline, tmp_path):
    """The resume check used to compare the bench's path only: after deleting the first annotation, the kept
    region/0.png drawn for the first word was labelled with the second. Each item now carries its instance's key
    (image, annotation, text, polygon) and is regenerated when that changed; items gone from the bench go too."""
    bench = json.loads((tiny / "bench_root/benchmark/ic13/test.json").read_text(encoding="utf-8"))
    bench["data_root"] = str((tiny / "bench_root/benchmark/ic13/images").resolve())
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "o"
    run_in(tiny, config(tiny, out, bench=str(path)))
    texts = bench_texts(tiny)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "local").iterdir()}
    # 1) one text edited: only that item is redrawn
    bench["data_list"][0]["annotations"][2]["text"] = "EDITED"
    path.write_text(json.dumps(bench, ensure_ascii=False), encoding="utf-8")
    meta = run_in(tiny, config(tiny, out, bench=str(path)))
    assert meta["counts"]["generated"] == 1
    assert [n for n, t in mtimes.items() if (out / "local" / n).stat().st_mtime_ns != t] == ["2.png"]
    assert json.loads((out / "labels.json").read_text(encoding="utf-8"))["2.png"] == "EDITED"
    # 2) the first annotation deleted: every number shifts, every item is redrawn for its new instance
    first = bench["data_list"][0]["annotations"].pop(0)
    path.write_text(json.dumps(bench, ensure_ascii=False), encoding="utf-8")
    meta = run_in(tiny, config(tiny, out, bench=str(path)))
    labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert labels["0.png"] == texts[1] != first["text"] and len(labels) == len(texts) - 1
    assert meta["counts"]["generated"] == len(texts) - 1
    assert sorted(p.name for p in (out / "region").iterdir()) == sorted(labels)  # the last number is gone
    fresh = tmp_path / "fresh"
    run_in(tiny, config(tiny, fresh, bench=str(path)))
    assert keyed(out, "0.png") == keyed(fresh, "0.png") is not None
    assert_same_images(out, fresh)


def test_control_characters_and_malformed_entries_are_skipped_and_counted(tiny, bench_mini_dir):
    bench = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    good = bench["data_list"][2]
    word = good["annotations"][0]
    path = tiny / "control.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"data_root": str(bench_mini_dir / "benchmark/ic13/images"),
                                                   "data_list": [
        dict(good, annotations=[dict(word, text="A\nB"), dict(word, text="C\rD"), dict(word, text=" "), word]),
        "junk", {"img_name": None, "annotations": [word]}, dict(good, annotations="nope")]}).encode("utf-8"))
    out = tiny / "control"
    meta = run_in(tiny, config(tiny, out, bench=str(path)))
    assert list(json.loads((out / "labels.json").read_text(encoding="utf-8"))) == ["3.png"]
    assert meta["skipped"] == {"annotations_malformed": 1, "empty_text": 1, "entry_malformed": 1,
                               "image_name_invalid": 1, "text_control_chars": 2}


@pytest.mark.parametrize("option, message", [
    ("batch_size=abc", "batch_size='abc': must be an integer >= 1"),
    ("seed=abc", "seed='abc': must be an integer >= 0"),
    ("seed=-5", "seed=-5: must be >= 0"),
    ("num_inference_steps=2.7", "num_inference_steps=2.7: must be an integer >= 1"),
    ("font_path=README.md", "font_path='README.md' is not a usable font file"),
    ("output_dir=README.md", "output_dir=README.md: is a file, not a folder"),
    ("output_dir=/proc/no/such", "cannot create anything in /proc"),
])
def test_ordinary_mistakes_are_one_line_before_anything_is_written(tiny, option, message):
    opts = options(tiny, tiny / "never")
    run = cli(["--config", "configs/tiny/infer_cfg.py", "--cfg-options",
               *[f"{k}={v}" for k, v in opts.items()], option])
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.strip().splitlines() if "Warning" not in line and not line.startswith(" ")]
    assert lines == [lines[-1]] and message in lines[-1] and "Traceback" not in run.stderr
    assert not (tiny / "never").exists()


@pytest.mark.parametrize("chosen, dtype", [("bf16", "bfloat16"), ("no", "float32")])
def test_mixed_precision_auto_follows_the_measurement(tiny, fake_precision, chosen, dtype):
    """infer's mixed_precision="auto" times one sampling step both ways (faked both ways here) and generates in the
    faster dtype; meta.json says which and why."""
    seen = fake_precision(chosen)
    out = tiny / f"auto_{chosen}"
    meta = run_in(tiny, config(tiny, out, mixed_precision="auto"))
    assert seen == [chosen] and meta["dtype"] == dtype
    assert meta["precision_choice"]["dtype"] == dtype and meta["precision_choice"]["reason"] == "faked"
    assert meta["settings"]["mixed_precision"] == "auto" and meta["counts"]["written"] == len(bench_texts(tiny))
