"""Stopping a script by signal, then rerunning the same command. SIGINT (Ctrl-C): exit status 130 and the last
stderr line "interrupted; rerun the same command to resume", no traceback (textssr.config.run_script); SIGTERM
(what a scheduler or `kill` sends): Python's default, an immediate exit with status -15 and nothing written
half-way. Either way the rerun resumes and completes. (synthesize.py's Ctrl-C is in tests/test_synth_run.py.)"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from textssr.synth.settings import SynthSettings
from textssr.infer.settings import InferSettings
from textssr.config import load_config

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
MESSAGE = "interrupted; rerun the same command to resume"
RES = 32


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import save_tiny_sd21
    return Path(save_tiny_sd21(str(tmp_path_factory.mktemp("signal_sd21"))))


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so that Python turns it into KeyboardInterrupt even
    when the tests run where it is ignored (a shell's background job inherits SIG_IGN, and Python then keeps it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_when(cmd, ready, sig, log: Path):
    """Run ``cmd``; send ``sig`` as soon as ``ready()``; return (exit status, stderr). stderr goes to a file (a
    pipe nobody reads while polling could fill up with progress bars and block the process)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=default_sigint)
        try:
            while proc.poll() is None:
                if ready():
                    proc.send_signal(sig)
                    break
                time.sleep(0.005)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, log.read_text()


def assert_stopped_as_documented(sig, returncode, stderr):
    if sig == signal.SIGINT:
        assert returncode == 130, stderr[-3000:]
        assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == MESSAGE, stderr[-3000:]
    else:  # no handler: the default action, no message, no Python cleanup
        assert returncode == -signal.SIGTERM, stderr[-3000:]


def rerun(cmd):
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# ------------------------------------------------------------------------------ infer.py


@pytest.fixture(scope="module")
def infer_bench(bench_mini_dir, tmp_path_factory):
    bench = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    path = tmp_path_factory.mktemp("signal_infer") / "bench.json"
    path.write_text(json.dumps(dict(bench, data_root=str(bench_mini_dir / "benchmark/ic13/images")),
                               ensure_ascii=False), encoding="utf-8")
    return path, sum(len(e["annotations"]) for e in bench["data_list"])


def infer_options(model, bench, out):
    return dict(bench=str(bench), output_dir=str(out), pretrained_vae=str(model / "vae"),
                pretrained_unet=str(model / "unet"), scheduler_path=str(model), resolution=RES, num_inference_steps=1,
                batch_size=2, device="cpu", mixed_precision="no")


@pytest.fixture(scope="module")
def infer_baseline(tiny_model, infer_bench):
    from textssr.infer import run_inference
    out = infer_bench[0].parent / "baseline"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_inference(InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"),
                                  infer_options(tiny_model, infer_bench[0], out)))
    finally:
        torch.set_num_threads(threads)
    return out


def test_infer_stopped_by_sigint_then_by_sigterm_then_rerun_completes(tiny_model, infer_bench, infer_baseline,
                                                                     tmp_path):
    bench, total = infer_bench
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "infer.py"), "--config", str(REPO / "configs/tiny/infer_cfg.py"),
           "--cfg-options", *[f"{k}={v}" for k, v in infer_options(tiny_model, bench, out).items()]]
    local, finished = out / "local", [0]
    for sig in (signal.SIGINT, signal.SIGTERM):  # each run stopped once it has finished an item of its own
        def ready():
            return local.is_dir() and len(list(local.glob("*.png"))) > finished[-1]
        returncode, stderr = stop_when(cmd, ready, sig, tmp_path / f"err_{sig.name}")
        assert_stopped_as_documented(sig, returncode, stderr)
        finished.append(len(list(local.glob("*.png"))))
        assert finished[-2] < finished[-1] < total, "the run ended before the signal"
    rerun(cmd)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["complete"] and meta["counts"]["written"] == total
    assert meta["counts"]["kept_from_previous"] >= finished[-1]  # resumed, not restarted
    assert (out / "labels.json").read_bytes() == (infer_baseline / "labels.json").read_bytes()
    assert not list(out.glob("*/*.tmp"))
    for sub in ("local", "region", "gt"):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == sorted(p.name for p in (infer_baseline / sub).iterdir())
        for name in names:
            a, b = (np.asarray(Image.open(d / sub / name), dtype=int) for d in (out, infer_baseline))
            assert a.shape == b.shape and np.abs(a - b).max() <= 1, f"{sub}/{name}"  # other batches: ±1 level


# ------------------------------------------------------------------------------ a training stage


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from textssr.data.tiny_data import generate
    out = tmp_path_factory.mktemp("signal_corpus")
    generate(out, num_images=8, bench_images=2, seed=11)
    return out / "AnyWord-lmdb"


def test_training_stopped_by_sigint_then_by_sigterm_then_rerun_resumes_from_its_checkpoints(corpus, tmp_path):
    from textssr.train.checkpoint import list_checkpoints
    out, steps = tmp_path / "vae", 30
    cmd = [sys.executable, str(REPO / "train_vae.py"), "--config", str(REPO / "configs/tiny/train_vae_cfg.py"),
           "--cfg-options", f"output_dir={out}", f"lmdb_path={corpus / 'step1_lmdb'}", f"resolution={RES}",
           "train_batch_size=2", "dataloader_num_workers=0", "report_to=None", "logging_steps=1",
           "mixed_precision=no", f"max_train_steps={steps}", "checkpointing_steps=3", "checkpoints_total_limit=None"]

    def newest():
        return max((step for step, _ in list_checkpoints(out)), default=0)

    saved = [0]
    for sig in (signal.SIGINT, signal.SIGTERM):  # each run stopped once it has saved a checkpoint of its own
        returncode, stderr = stop_when(cmd, lambda: newest() > saved[-1], sig, tmp_path / f"err_{sig.name}")
        assert_stopped_as_documented(sig, returncode, stderr)
        saved.append(newest())
        assert saved[-2] < saved[-1] < steps, "the run ended before the signal"
    rerun(cmd)
    log = [json.loads(line) for line in open(out / "train_log.jsonl")]
    starts = [r for r in log if r["event"] == "start"]
    assert [s["step"] for s in starts] == saved
    resumed = log[log.index(starts[-1]):]
    assert [r["step"] for r in resumed if r["event"] == "step"] == list(range(saved[-1] + 1, steps + 1))
    assert resumed[-1]["event"] == "end" and newest() == steps
    assert not any(name.startswith(".tmp-") for name in os.listdir(out))


# ------------------------------------------------------------------------------ synthesize.py


def test_synthesis_stopped_by_sigterm_then_rerun_gives_the_uninterrupted_set(tiny_model, bench_mini_dir, tmp_path):
    from textssr.synth.runner import synthesize
    from textssr.synth.str_lmdb import StrLmdbReader
    ic13 = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    source = tmp_path / "source.json"
    source.write_text(json.dumps({"data_root": str(bench_mini_dir / "benchmark/ic13/images"),
                                  "data_list": ic13["data_list"][1:4]}), encoding="utf-8")

    def options(out):
        return dict(source=str(source), output_dir=str(out), max_regions=6, pretrained_vae=str(tiny_model / "vae"),
                    pretrained_unet=str(tiny_model / "unet"), scheduler_path=str(tiny_model / "scheduler"),
                    resolution=RES, num_inference_steps=1, batch_size=2, variants_per_region=3)

    def records(path):
        with StrLmdbReader(str(path)) as reader:
            return [(r.image, r.label, r.wh, r.meta["region"], r.meta["variant"]) for r in reader]

    def state(path):
        if not (path / "data.mdb").is_file():
            return None
        with StrLmdbReader(str(path)) as reader:
            return reader.state

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses: the same float reduction order
    try:
        synthesize(SynthSettings.load(str(REPO / "configs/tiny/synth_cfg.py"), options(tmp_path / "baseline")))
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "synthesize.py"), "--config", str(REPO / "configs/tiny/synth_cfg.py"),
           "--cfg-options", *[f"{k}={v}" for k, v in options(out).items()]]

    def mid_way():
        s = state(out / "lmdb")
        return bool(s) and s["cursor"] > 0 and not s["done"]

    returncode, stderr = stop_when(cmd, mid_way, signal.SIGTERM, tmp_path / "err")
    assert_stopped_as_documented(signal.SIGTERM, returncode, stderr)
    assert not state(out / "lmdb")["done"], "the run ended before the signal"
    rerun(cmd)
    assert records(out / "lmdb") == records(tmp_path / "baseline" / "lmdb")
    stats, expected = (json.loads((d / "stats.json").read_text()) for d in (out, tmp_path / "baseline"))
    assert {k: stats[k] for k in ("items", "generated", "kept", "skipped")} == \
        {k: expected[k] for k in ("items", "generated", "kept", "skipped")}
