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

from conftest import reset_accelerate

REPO = Path(__file__).resolve().parents[1]
RES = 32
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACCELERATE_USE_CPU="true", PYTHONUNBUFFERED="1")
ENV.pop("ACCELERATE_MIXED_PRECISION", None)
BOUND_S = 240  # no launch here may take longer, even when the fault makes a rank wait (ddp_timeout is short)

pytestmark = [pytest.mark.skipif(torch.cuda.is_available(), reason="CPU (gloo) launches"),
              pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")]


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(fault, script, options: dict, processes=2, config=None):
    """`accelerate launch --multi_gpu --num_processes N tests/rank_fault.py FAULT SCRIPT --config ... --cfg-options`
    (FAULT None: the script alone); returns (completed process, the `error:` lines of stderr)."""
    config = config or f"configs/tiny/{ {'train_vae.py': 'train_vae', 'train_diff.py': 'train_diff_step1', 'infer.py': 'infer', 'synthesize.py': 'synth'}[script] }_cfg.py"
    target = ["tests/rank_fault.py", fault, script] if fault else [script]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
           "--num_processes", str(processes), "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), *target, "--config", config,
           "--cfg-options", *[f"{k}={v}" for k, v in options.items()]]
    run = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=BOUND_S)
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
