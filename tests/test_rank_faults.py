"""Faults injected on ONE rank of a real multi-process launch (`accelerate launch --multi_gpu`, CPU ranks over
gloo, through tests/rank_fault.py): every rank must stop together within a bound, with one line on stderr naming
the cause, or resume as an uninterrupted run would. Tiny models, 32-px crops, one thread per rank."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import free_port, reset_accelerate, write_ic13_regions

REPO = Path(__file__).resolve().parents[1]
RES = 32
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACCELERATE_USE_CPU="true", PYTHONUNBUFFERED="1")
ENV.pop("ACCELERATE_MIXED_PRECISION", None)
BOUND_S = 240  # no launch here may take longer, even when the fault makes a rank wait (ddp_timeout is short)

pytestmark = [pytest.mark.skipif(torch.cuda.is_available(), reason="CPU (gloo) launches"),
              pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")]



def launch(fault, script, options: dict, processes=2, config=None, bound_s=BOUND_S):
    """`accelerate launch --multi_gpu --num_processes N tests/rank_fault.py FAULT SCRIPT --config ... --cfg-options`
    (FAULT None: the script alone); returns (completed process, the `error:` lines of stderr)."""
    config = config or f"configs/tiny/{ {'train_vae.py': 'train_vae', 'train_diff.py': 'train_diff_step1', 'infer.py': 'infer', 'synthesize.py': 'synth'}[script] }_cfg.py"
    target = ["tests/rank_fault.py", fault, script] if fault else [script]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
           "--num_processes", str(processes), "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), *target, "--config", config,
           "--cfg-options", *[f"{k}={v}" for k, v in options.items()]]
    with subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=bound_s)
        except subprocess.TimeoutExpired:  # the launcher and every rank it started (each in a session of its own)
            import psutil
            launcher = psutil.Process(proc.pid)
            for p in launcher.children(recursive=True) + [launcher]:
                p.kill()
            proc.communicate()
            raise
    run = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    lines = run.stderr.replace("\r", "\n").splitlines()  # (a progress bar's last refresh is no line of its own)
    return run, [line for line in lines if line.startswith("error: ")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import save_tiny_sd21
    return Path(save_tiny_sd21(str(tmp_path_factory.mktemp("fault_sd21"))))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from textssr.data.tiny_data import generate
    out = tmp_path_factory.mktemp("fault_corpus")
    generate(out, num_images=6, bench_images=1, seed=5)
    return out / "AnyWord-lmdb" / "step1_lmdb"


def vae_options(corpus, out, **extra):
    return dict(dict(output_dir=str(out), lmdb_path=str(corpus), resolution=RES, train_batch_size=2,
                     gradient_accumulation_steps=1, dataloader_num_workers=0, report_to=None, logging_steps=1,
                     mixed_precision="no", max_train_steps=2, checkpointing_steps=1, checkpoints_total_limit=None,
                     ddp_timeout=30), **extra)


def checkpoints(out):
    return sorted(p.name for p in Path(out).glob("checkpoint-*"))


def tree_digest(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ training


def test_non_finite_first_latents_on_rank_1_stop_every_rank_with_one_line(tiny_model, corpus, tmp_path):
    out = tmp_path / "cdm"
    run, errors = launch("latents_inf@1", "train_diff.py", dict(
        vae_options(corpus, out), pretrained_vae=str(tiny_model / "vae"), vae_dtype="fp32", latent_cache=False,
        region_placement="random", train_batch_size=1))
    assert run.returncode != 0
    # printed once, by rank 0, which stopped on its own knowing rank 1's first batch was bad
    assert len(errors) == 1, run.stderr[-3000:]
    assert "latents of the first batch are not finite" in errors[0] and "(on rank 1)" in errors[0]
    assert checkpoints(out) == []


def test_a_nan_gradient_on_rank_1_stops_the_run_before_its_checkpoint(corpus, tmp_path):
    out = tmp_path / "vae"
    run, errors = launch("nan_grad:3@1", "train_vae.py", vae_options(corpus, out, max_train_steps=4))
    assert run.returncode != 0 and len(errors) == 1, run.stderr[-3000:]
    assert "the gradient norm is nan" in errors[0] and "at step 3" in errors[0] and "checkpoint-2" in errors[0]
    assert checkpoints(out) == ["checkpoint-1", "checkpoint-2"]


@pytest.fixture(scope="module")
def two_checkpoints(corpus, tmp_path_factory):
    """A VAE run of 2 steps with checkpoint-1 and checkpoint-2 (one process, here)."""
    from textssr.train import train
    from textssr.train.settings import TrainSettings
    out = tmp_path_factory.mktemp("fault_resume") / "vae"
    reset_accelerate()
    train(TrainSettings.load(str(REPO / "configs/tiny/train_vae_cfg.py"), vae_options(corpus, out)), "vae")
    reset_accelerate()
    return out


def test_rank_1_listing_an_older_checkpoint_still_resumes_where_rank_0_does(two_checkpoints, corpus, tmp_path):
    out = tmp_path / "vae"
    import shutil
    shutil.copytree(two_checkpoints, out)
    run, errors = launch("old_listing@1", "train_vae.py", vae_options(corpus, out, max_train_steps=3,
                                                                      resume_from_checkpoint="latest"))
    assert run.returncode == 0 and not errors, run.stderr[-3000:]
    log = [json.loads(line) for line in open(out / "train_log.jsonl")]
    start = [r for r in log if r["event"] == "start"][-1]
    assert start["resumed_from"].endswith("checkpoint-2") and start["num_processes"] == 2
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3


def test_a_rank_that_cannot_see_the_chosen_checkpoint_stops_every_rank(two_checkpoints, corpus, tmp_path):
    out = tmp_path / "vae"
    import shutil
    shutil.copytree(two_checkpoints, out)
    run, errors = launch("blind_resume@1", "train_vae.py", vae_options(corpus, out, max_train_steps=3,
                                                                       resume_from_checkpoint="latest"))
    assert run.returncode != 0 and len(errors) == 1, run.stderr[-3000:]
    assert "rank 1 cannot see" in errors[0] and "checkpoint-2" in errors[0]
    assert checkpoints(out) == ["checkpoint-1", "checkpoint-2"]


def test_ddp_gradients_stay_in_their_buckets_across_accumulated_micro_batches(corpus, tmp_path):
    """gradient_as_bucket_view saves a full gradient copy only if the gradients are zeroed in place: with
    set_to_none every non-syncing micro-batch would allocate new ones beside DDP's buckets."""
    record = tmp_path / "grads.jsonl"
    run, errors = launch(f"record_grads:{record}@1", "train_vae.py",
                         vae_options(corpus, tmp_path / "vae", max_train_steps=3, gradient_accumulation_steps=2,
                                     train_batch_size=1, checkpointing_steps=100))
    assert run.returncode == 0, run.stderr[-3000:]
    pointers = [tuple(json.loads(line)) for line in record.read_text().splitlines()]
    assert len(pointers) == 6 and len(pointers[2]) > 0
    # after the first step (DDP rebuilds its buckets once), every micro-batch accumulates into the same storage
    assert len(set(pointers[2:])) == 1


# ------------------------------------------------------------------------------ synthesis and infer


@pytest.fixture(scope="module")
def region_source(bench_mini_dir, tmp_path_factory):
    return write_ic13_regions(bench_mini_dir, tmp_path_factory.mktemp("fault_synth"))


def synth_options(model, source, out, **extra):
    return dict(dict(source=str(source), output_dir=str(out), max_regions=6, pretrained_vae=str(model / "vae"),
                     pretrained_unet=str(model / "unet"), scheduler_path=str(model / "scheduler"), resolution=RES,
                     num_inference_steps=1, batch_size=2, variants_per_region=2, poll_seconds=0.2,
                     ddp_timeout=30), **extra)


def test_a_rank_that_stops_producing_ends_the_synthesis_within_ddp_timeout(tiny_model, region_source, tmp_path):
    out = tmp_path / "stalled"
    run, errors = launch("stall@1", "synthesize.py", synth_options(tiny_model, region_source, out, ddp_timeout=6),
                         bound_s=120)
    assert run.returncode != 0 and len(errors) == 1, run.stderr[-3000:]
    assert "rank 0 waited more than ddp_timeout=6 s for the finished shards of rank 1" in errors[0]
    assert not (out / "lmdb").exists() and (out / "shards" / "rank1-of-2").is_dir()  # nothing merged nor deleted


def test_a_rank_whose_detection_stalls_ends_a_photo_synthesis_within_ddp_timeout(tiny_model, icdar15_dir, tmp_path):
    """Rank 0 numbers the regions of rank 1's photos from rank 1's stored detections: a wait for a file, bounded."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("img_1.jpg", "img_3.jpg"):
        (photos / name).write_bytes((icdar15_dir / name).read_bytes())
    out = tmp_path / "stalled_detection"
    options = synth_options(tiny_model, photos, out, ddp_timeout=6, max_regions=None, text_source="anagram")
    run, errors = launch("stall_detection@1", "synthesize.py", options, bound_s=180)
    assert run.returncode != 0 and len(errors) == 1, run.stderr[-3000:]
    assert "rank 0 waited more than ddp_timeout=6 s for rank 1's detection of photo img_3.jpg" in errors[0]
    assert not (out / "lmdb").exists()


def test_a_killed_synthesis_relaunched_on_three_processes_is_refused_and_kept(tiny_model, region_source, tmp_path):
    out = tmp_path / "killed"
    run, _ = launch("kill_after:1@1", "synthesize.py", synth_options(tiny_model, region_source, out))
    assert run.returncode != 0 and not (out / "lmdb").exists()
    assert (out / "shards" / "rank1-of-2" / "data.mdb").is_file()  # rank 1 committed a batch before it died
    before = tree_digest(out)
    run, errors = launch(None, "synthesize.py", synth_options(tiny_model, region_source, out), processes=3)
    assert run.returncode != 0 and len(errors) == 1, run.stderr[-3000:]  # exit status 2 on every rank
    assert "started with 2 processes" in errors[0] and "this launch has 3" in errors[0]
    assert "--num_processes 2" in errors[0]
    assert tree_digest(out) == before  # no shard of the old run deleted, none of the new one opened


def test_a_killed_infer_relaunched_on_three_processes_resumes_to_the_uninterrupted_files(tiny_model, bench_mini_dir,
                                                                                         tmp_path):
    from textssr.infer import run_inference
    from textssr.infer.settings import InferSettings
    bench = json.loads((bench_mini_dir / "benchmark/shopsign/test.json").read_text(encoding="utf-8"))
    subset = dict(bench, data_root=str(bench_mini_dir / "benchmark/shopsign/images"), data_list=bench["data_list"][:2])
    (tmp_path / "bench.json").write_text(json.dumps(subset, ensure_ascii=False), encoding="utf-8")
    opts = dict(bench=str(tmp_path / "bench.json"), pretrained_vae=str(tiny_model / "vae"),
                pretrained_unet=str(tiny_model / "unet"), scheduler_path=str(tiny_model), resolution=RES, ttf_size=64,
                max_len=25, num_inference_steps=1, batch_size=1, device="cpu", mixed_precision="no", ddp_timeout=30)
    single = run_inference(InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"),
                                              dict(opts, output_dir=str(tmp_path / "single"))))
    assert single["counts"]["written"] >= 4
    out = tmp_path / "resumed"
    run, _ = launch("kill_after:1@1", "infer.py", dict(opts, output_dir=str(out)))
    assert run.returncode != 0
    finished = len(list((out / "local").glob("*.png")))
    assert 1 <= finished < single["counts"]["written"]
    run, errors = launch(None, "infer.py", dict(opts, output_dir=str(out)), processes=3)
    assert run.returncode == 0 and not errors, run.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["processes"] == 3 and meta["counts"]["kept_from_previous"] == finished
    assert meta["counts"]["written"] == single["counts"]["written"]
    for name in ("labels.json", "instances.json"):
        assert (out / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    for sub in ("local", "region", "gt"):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "single" / sub).iterdir())
        for name in names:  # per-instance generators, one item per batch, one thread: the same pixels
            a, b = (np.asarray(Image.open(d / sub / name)) for d in (out, tmp_path / "single"))
            assert np.array_equal(a, b), f"{sub}/{name}"
