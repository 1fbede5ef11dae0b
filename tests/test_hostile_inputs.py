"""Hostile inputs a new user met on another machine: runs whose filters leave nothing to do fail in one line before
the models load (and every filter's removals are counted), unreadable inputs are one-line start-up errors, sizes
that cannot fit are refused before anything is allocated, and images named outside data_root are never read.
Tiny generated corpus, tiny random models (SD 2.1 layout), real scripts as subprocesses."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from textssr.infer.settings import InferSettings
from textssr.config import ConfigError
from textssr.data.errors import DataError
from textssr.data import AnyWordDataset, SkipSample
from textssr.data.build_lmdb import build_lmdb, main as build_lmdb_main

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
GOOD = [[377, 117], [463, 117], [465, 130], [378, 130]]  # "Genaxis Theatre" in icdar15_toy/img_1.jpg


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 4-image tiny corpus (Latin and Chinese words; train.json, bench/test.json) and tiny random models."""
    from tiny_models import save_tiny_sd21
    from textssr.data.tiny_data import generate
    root = tmp_path_factory.mktemp("hostile")
    generate(root, num_images=4, bench_images=2, seed=5, progress=False, build_lmdbs=False)
    save_tiny_sd21(str(root / "model"))
    return root


def model_options(root):
    model = root / "model"
    return [f"pretrained_vae={model / 'vae'}", f"pretrained_unet={model / 'unet'}", f"scheduler_path={model}",
            "resolution=64", "ttf_size=64", "max_len=25"]


def run(script, config, options):
    """The script in a child process: (exit status, stdout, stderr, the child's peak resident memory in bytes)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, script, "--config", config, "--cfg-options", *options], cwd=REPO,
                                 env=ENV, stdout=out, stderr=err, text=True)
        peak = peak_rss(child)
        out.seek(0)
        err.seek(0)
        return child.returncode, out.read(), err.read(), peak


def peak_rss(child) -> int:
    """The child's peak resident memory (VmHWM of its own address space, polled until it exits). Not wait4's
    ru_maxrss: Linux carries the parent's high-water mark across fork/vfork + exec into it, so it would measure
    this test process as it has grown over the suite."""
    peak = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):  # exiting
            pass
        time.sleep(0.02)
    return peak


def infer(root, out, *extra):
    return run("infer.py", "configs/tiny/infer_cfg.py", [f"bench={root / 'bench' / 'test.json'}", f"output_dir={out}",
                                                         "device=cpu", *model_options(root), *extra])


def synthesize(root, out, *extra):
    return run("synthesize.py", "configs/tiny/synth_cfg.py", [f"source={root / 'train.json'}", f"output_dir={out}",
                                                              *model_options(root), *extra])


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if "Warning" not in line and not line.startswith(" ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err[-2000:]
    return lines[0]


# ------------------------------------------------------------------------------------------- nothing to do


@pytest.mark.parametrize("script", [infer, synthesize])
def test_a_language_that_matches_nothing_fails_before_the_models_load(corpus, tmp_path, script):
    """Both scripts used to load the models; synthesize.py then exited 0 with an empty LMDB."""
    code, out, err, _ = script(corpus, tmp_path / "out", "language=Klingon")
    line = one_error_line(err)
    assert code == 1 and "nothing to" in line and "filtered: other_language=" in line, err
    assert "mixed_precision" not in out  # printed once the pipeline loads
    assert not (tmp_path / "out" / "lmdb").exists() and not (tmp_path / "out" / "meta.json").exists()


def test_infer_counts_what_the_language_filter_removed(corpus, tmp_path):
    code, out, err, _ = infer(corpus, tmp_path / "out", "language=Latin")
    assert code == 0, err
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    bench = json.loads((corpus / "bench" / "test.json").read_text())["data_list"]
    chinese = sum(a.get("language") == "Chinese" for e in bench for a in e["annotations"])
    assert chinese > 0 and meta["filtered"] == {"other_language": chinese} and meta["counts"]["filtered"] == chinese
    assert f"filtered {chinese}: other_language={chinese}" in out


def test_synthesis_counts_its_filters_and_fails_when_nothing_is_kept(corpus, tmp_path):
    """language and max_regions removals land in stats.json; screening that keeps nothing is not a success."""
    code, out, err, _ = synthesize(corpus, tmp_path / "out", "language=Latin", "max_regions=2", "variants_per_region=1",
                                   "screening=dict(match='exact',min_confidence=1.0)")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["filtered"]["other_language"] > 0 and stats["filtered"]["beyond_max_regions"] > 0
    assert f"other_language={stats['filtered']['other_language']}" in out
    last = err.strip().splitlines()[-1]  # after the progress bars
    assert stats["kept"] == 0 and code == 1 and last.startswith("error: no crop was kept") and "Traceback" not in err


def test_build_lmdb_counts_the_language_filter_and_fails_on_an_empty_result(corpus, tmp_path, capsys):
    summary = build_lmdb([str(corpus / "train.json")], str(tmp_path / "latin"), language="Latin", progress=False)
    assert summary["filtered"]["other_language"] > 0 and "other_language" not in summary["skipped"]
    code = build_lmdb_main(["--json", str(corpus / "train.json"), "--out", str(tmp_path / "none"), "--language",
                            "Klingon", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "holds no sample" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- unreadable inputs


def test_a_lexicon_that_is_not_utf8_is_named(corpus, tmp_path):
    lexicon = tmp_path / "words.txt"
    lexicon.write_bytes("café\n".encode("latin-1"))
    code, _, err, _ = synthesize(corpus, tmp_path / "out", f"lexicon={lexicon}", "text_source=lexicon")
    line = one_error_line(err)
    assert code == 2 and f"lexicon file {lexicon} is not UTF-8 text (byte 0xe9" in line


def deeply_nested(path: Path, depth: int = 100_000) -> Path:
    path.write_text('{"data_root": ".", "data_list": ' + "[" * depth + "]" * depth + "}")
    return path


def test_a_bench_nested_100000_levels_deep_is_one_line(corpus, tmp_path, capsys):
    bench = deeply_nested(tmp_path / "deep.json")
    code, _, err, _ = run("infer.py", "configs/tiny/infer_cfg.py", [f"bench={bench}", f"output_dir={tmp_path / 'o'}",
                                                                    "device=cpu", *model_options(corpus)])
    assert code == 2 and f"{bench} is not valid JSON: nested too deeply" in one_error_line(err)
    assert build_lmdb_main(["--json", str(bench), "--out", str(tmp_path / "lmdb"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bench} is not valid JSON: nested too deeply") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("script", [infer, synthesize])
@pytest.mark.parametrize("options, expected", [
    (["resolution=4096"], "resolution=4096 is more than 4x from the UNet's training value 64"),
    (["resolution=4096", "allow_far_resolution=True", "batch_size=64"], "resolution=4096 with batch_size=64 needs"),
])
def test_a_resolution_that_cannot_fit_is_refused_at_once(corpus, tmp_path, script, options, expected):
    """resolution=4096 on models trained at 64 used to grow to ~24 GB until the kernel killed it."""
    started = time.monotonic()
    code, _, err, peak = script(corpus, tmp_path / "out", *options)
    assert code == 2 and expected in one_error_line(err)
    assert time.monotonic() - started < 120 and peak < 2 * 2**30  # refused before anything big was allocated


def test_the_memory_estimate_refuses_what_cannot_fit_and_passes_what_can(corpus, monkeypatch):
    from textssr import generation
    from textssr.config import load_config
    options = dict(o.split("=", 1) for o in model_options(corpus))
    options.update(resolution=64, ttf_size=64, max_len=25, output_dir=str(corpus / "o"))
    cfg = InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), options)
    run_ = generation.resolve_run(cfg, True)
    small = generation.estimate_memory(run_, 8)
    assert small < 300 * 2**20  # the tiny models at 64 px: weights + ~6 MiB a sample
    monkeypatch.setattr(generation.memory, "available_memory", lambda device: 16 * 2**30)
    assert generation.check_memory(run_, 8, torch.device("cpu")) == small
    weights = generation.estimate_memory(run_, 0)
    run_ = dataclasses.replace(run_, resolution=4096)
    assert generation.estimate_memory(run_, 8) - weights == (4096 // 64) ** 2 * (small - weights)  # ~ R²
    with pytest.raises(ConfigError, match=r"resolution=4096 with batch_size=8 needs about \d+\.\d GiB but cpu has "
                                          r"16\.0 GiB free; use a smaller resolution"):
        generation.check_memory(run_, 8, torch.device("cpu"))


# ------------------------------------------------------------------------------------------- images outside the root


def outside_bench(tmp_path, icdar15_dir):
    """A bench in tmp/bench/ whose entries name an image inside data_root, one by ../ and one by absolute path."""
    (tmp_path / "bench").mkdir()
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(icdar15_dir / "img_1.jpg", tmp_path / "bench" / "inside.jpg")
    shutil.copy(icdar15_dir / "img_1.jpg", tmp_path / "elsewhere" / "secret.jpg")
    ann = {"polygon": GOOD, "text": "Genaxis", "language": "Latin"}
    entries = [{"img_name": "inside.jpg", "annotations": [ann]},
               {"img_name": "../elsewhere/secret.jpg", "annotations": [ann, ann]},
               {"img_name": str(tmp_path / "elsewhere" / "secret.jpg"), "annotations": [ann]},
               {"img_name": "./inside.jpg", "annotations": [ann]}]
    path = tmp_path / "bench" / "test.json"
    path.write_text(json.dumps({"data_root": ".", "data_list": entries}))
    return str(path)


def test_images_named_outside_data_root_are_skipped_and_counted(tmp_path, icdar15_dir):
    bench = outside_bench(tmp_path, icdar15_dir)
    ds = AnyWordDataset(bench, resolution=32)
    assert ds.skip_counts == {"image_outside_root": 3} and len(ds) == 2 and ds.numbers == [0, 4]
    assert all(os.path.dirname(os.path.normpath(p)) == str(tmp_path / "bench") for p in ds.image_paths)
    with pytest.raises(SkipSample, match="image_outside_root"):
        AnyWordDataset(bench, resolution=32, strict=True)
    allowed = AnyWordDataset(bench, resolution=32, allow_images_outside_root=True)
    assert len(allowed) == 5 and not allowed.skip_counts
    assert allowed.build(1)["image"].shape == (3, 32, 32)  # the layouts that need it still work
    with pytest.raises(DataError, match="allow_images_outside_root='yes': must be True or False"):
        AnyWordDataset(bench, resolution=32, allow_images_outside_root="yes")


def test_build_lmdb_reads_no_image_outside_data_root(tmp_path, icdar15_dir):
    bench = outside_bench(tmp_path, icdar15_dir)
    summary = build_lmdb([bench], str(tmp_path / "lmdb"), progress=False)
    assert summary["skipped"] == {"image_outside_root": 3} and summary["samples"] == 2
    summary = build_lmdb([bench], str(tmp_path / "lmdb_all"), progress=False, allow_outside_root=True)
    assert summary["skipped"] == {} and summary["samples"] == 5
