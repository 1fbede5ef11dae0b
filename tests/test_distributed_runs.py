"""Two CPU processes (gloo) under `accelerate launch --multi_gpu --num_processes 2`: bad training samples counted
once over ranks and a resume with another process count, infer's skips merged over ranks, a killed-and-resumed
2-process synthesis, and a synthesis resumed with another process count refused. Tiny models, 32-px regions."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import free_port, reset_accelerate, write_ic13_regions
from textssr.synth.settings import SynthSettings
from textssr.infer.settings import InferSettings
from textssr.train.settings import TrainSettings
from textssr.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
RES = 32
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACCELERATE_USE_CPU="true", PYTHONUNBUFFERED="1")

pytestmark = [pytest.mark.skipif(torch.cuda.is_available(), reason="CPU (gloo) launches; on a GPU machine it is DDP"),
              pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")]



def launch_cmd(script, *args):
    """`accelerate launch --multi_gpu --num_processes 2 <script> <args>` on CPU ranks."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
            "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), str(REPO / script), *args]


def launch(script, *args, timeout=300):
    return subprocess.run(launch_cmd(script, *args), cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def cfg_options(options: dict):
    return ["--cfg-options", *[f"{k}={v}" for k, v in options.items()]]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import save_tiny_sd21
    return Path(save_tiny_sd21(str(tmp_path_factory.mktemp("dist_sd21"))))


# ------------------------------------------------------------------------------ training


BATCH = 2


def epoch0_batches(n: int, world: int, rank: int, seed: int):
    """The batches rank ``rank`` of ``world`` reads in epoch 0 (textssr.train.data.build_loader: a shuffled
    DistributedSampler seeded by the config's seed, drop_last)."""
    from torch.utils.data import DistributedSampler
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(0)
    order = list(sampler)
    return [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]


@pytest.fixture(scope="module")
def corrupted_lmdb(tmp_path_factory):
    """The tiny corpus's step1_lmdb (8 images) with the bytes of two images replaced by garbage, chosen from the
    data order of the run below (1 step on 1 process, then steps 2-3 on 2 processes): image A only in the
    1-process step, image B only in rank 1's two steps (the first seed from 3407 on whose data order has such a
    pair is used). Returns (path, seed, A's instances, B's instances)."""
    import lmdb
    import numpy as np
    from textssr.data.lmdb_store import IMAGE_PREFIX, INDEX_KEY, IndexTable
    from textssr.data.tiny_data import generate
    root = tmp_path_factory.mktemp("dist_corpus")
    generate(root, num_images=8, bench_images=2, seed=11)
    out = root / "corrupt_lmdb"
    shutil.copytree(root / "AnyWord-lmdb" / "step1_lmdb", out)
    env_path = next(p.parent for p in out.rglob("data.mdb"))
    env = lmdb.open(str(env_path), subdir=True)
    with env.begin() as txn:
        table = IndexTable.decode(txn.get(INDEX_KEY), str(env_path))
    n = len(table.ann_image)
    instances = {img: set(np.flatnonzero(table.ann_image == img).tolist()) for img in set(table.ann_image.tolist())}

    def choose(seed):
        one_process = set(epoch0_batches(n, 1, 0, seed)[0])
        ranks = [set().union(*epoch0_batches(n, 2, r, seed)[1:3]) for r in (0, 1)]  # batch 0: the resumed step
        for a, ia in instances.items():
            for b, ib in instances.items():
                # (a bad instance is replaced by the next index: B must not follow A, nor be read by rank 0)
                if ia <= one_process and ib <= ranks[1] and not ib & (ranks[0] | one_process) and min(ib) - 1 not in ia:
                    return a, b
        return None

    seed = next(seed for seed in range(3407, 3507) if choose(seed))  # a data order that splits them so
    a, b = choose(seed)
    with env.begin(write=True) as txn:
        for image in (a, b):
            txn.put(IMAGE_PREFIX + table.image_ids.raw(image), b"\xff\xd8 not a jpeg \xff\xd9")
    env.close()
    from textssr.data import AnyWordLmdbDataset
    assert len(AnyWordLmdbDataset(str(out), resolution=RES, vae_mode=True)) == n  # every row is a sample
    return out, seed, sorted(instances[a]), sorted(instances[b])


def vae_options(lmdb_path, seed, out, steps):
    return dict(output_dir=str(out), lmdb_path=str(lmdb_path), seed=seed, resolution=RES, train_batch_size=BATCH,
                gradient_accumulation_steps=1, dataloader_num_workers=0, report_to=None, logging_steps=1,
                mixed_precision="no", max_train_steps=steps, checkpointing_steps=100, checkpoints_total_limit=None)


@pytest.fixture(scope="module")
def resumed_on_two_ranks(corrupted_lmdb, tmp_path_factory):
    """The VAE stage over the corrupted LMDB: 1 step in this process (1 rank), then resumed under a 2-process
    launch up to step 3."""
    from textssr.train import train
    lmdb_path, seed = corrupted_lmdb[:2]
    out = tmp_path_factory.mktemp("dist_train") / "vae"
    reset_accelerate()
    first = train(TrainSettings.load(str(REPO / "configs/tiny/train_vae_cfg.py"), vae_options(lmdb_path, seed, out, 1)),
                  "vae")
    reset_accelerate()
    run = launch("train_vae.py", "--config", str(REPO / "configs/tiny/train_vae_cfg.py"),
                 *cfg_options(vae_options(lmdb_path, seed, out, 3)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, first


def test_two_ranks_count_each_bad_training_instance_once(resumed_on_two_ranks, corrupted_lmdb):
    """Bad instances found before the resume (both ranks carry them) and by rank 1 alone are each counted once."""
    out, first = resumed_on_two_ranks
    _, _, found_first, found_by_rank1 = corrupted_lmdb
    assert sorted(int(k) for k in first["skipped_instances"]) == found_first
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2
    bad = sorted(found_first + found_by_rank1)
    assert state["skipped"] == {"image_unreadable": len(bad)}
    assert sorted(int(k) for k in state["skipped_instances"]) == bad
    end = [json.loads(line) for line in open(out / "train_log.jsonl")][-1]
    assert end["event"] == "end" and end["skipped"] == {"image_unreadable": len(bad)}


def test_training_resumed_with_another_process_count_continues(resumed_on_two_ranks):
    """A run started on 1 process resumes on 2: the step count continues where it stopped (rank 1, which has no
    saved generator, draws a fresh rank-distinct stream) and both ranks' states are saved."""
    out, _ = resumed_on_two_ranks
    log = [json.loads(line) for line in open(out / "train_log.jsonl")]
    starts = [r for r in log if r["event"] == "start"]
    assert [(s["step"], s["num_processes"]) for s in starts] == [(0, 1), (1, 2)]
    assert starts[1]["resumed_from"].endswith("checkpoint-1")
    resumed = log[log.index(starts[1]):]
    assert [r["step"] for r in resumed if r["event"] == "step"] == [2, 3]
    for name in ("generator_0.pt", "generator_1.pt", "random_states_1.pkl", "vae/diffusion_pytorch_model.safetensors"):
        assert (out / "checkpoint-3" / name).is_file(), name
    g0, g1 = (torch.load(out / "checkpoint-3" / f"generator_{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(g0, g1)


# ------------------------------------------------------------------------------ infer


def write_bad_bench(path, bench_mini_dir):
    """tests/test_infer_run.py's bad bench (two good instances around an empty text, a missing image and a
    degenerate polygon) plus a second missing image with two words: 5 instances skipped, on both ranks."""
    bench = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    good = bench["data_list"][2]
    word = good["annotations"][0]
    data = {"data_root": str(bench_mini_dir / "benchmark/ic13/images"), "data_list": [
        dict(good, annotations=[word, dict(word, text="")]),
        {"img_name": "no_such_image.jpg", "annotations": [word]},
        dict(good, annotations=[dict(word, polygon=[[10, 10], [10, 10], [10, 10], [10, 10]]), word]),
        dict(bench["data_list"][4], img_name="also_missing.jpg"),
    ]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_two_process_infer_merges_the_skips_of_both_ranks(tiny_model, bench_mini_dir, tmp_path):
    from textssr.infer import run_inference
    bench = write_bad_bench(tmp_path / "bad.json", bench_mini_dir)
    opts = dict(bench=str(bench), pretrained_vae=str(tiny_model / "vae"), pretrained_unet=str(tiny_model / "unet"),
                scheduler_path=str(tiny_model), resolution=RES, ttf_size=64, max_len=25, num_inference_steps=1,
                batch_size=2, device="cpu", mixed_precision="no")
    single = run_inference(InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"),
                                       dict(opts, output_dir=str(tmp_path / "single"))))
    assert single["counts"]["skipped"] == 5 and len(single["skipped"]) == 3
    run = launch("infer.py", "--config", "configs/tiny/infer_cfg.py",
                 *cfg_options(dict(opts, output_dir=str(tmp_path / "two"))))
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.loads((tmp_path / "two" / "meta.json").read_text(encoding="utf-8"))
    assert meta["processes"] == 2
    assert meta["skipped"] == single["skipped"] and meta["counts"] == single["counts"]
    for name in ("labels.json", "instances.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    assert list(json.loads((tmp_path / "two" / "labels.json").read_text())) == ["0.png", "4.png"]


# ------------------------------------------------------------------------------ synthesis


def synth_options(model, source, out, **extra):
    return dict(dict(source=str(source), output_dir=str(out), max_regions=6, pretrained_vae=str(model / "vae"),
                     pretrained_unet=str(model / "unet"), scheduler_path=str(model / "scheduler"), resolution=RES,
                     num_inference_steps=1, batch_size=2, variants_per_region=3), **extra)


def synth_cli(model, source, out, **extra):
    return ["--config", str(REPO / "configs/tiny/synth_cfg.py"), *cfg_options(synth_options(model, source, out,
                                                                                             **extra))]


def records(path):
    from textssr.synth.str_lmdb import StrLmdbReader
    with StrLmdbReader(str(path)) as reader:
        return [(r.image, r.label, r.wh, r.meta["region"], r.meta["variant"]) for r in reader]


def shard_state(path):
    from textssr.synth.str_lmdb import StrLmdbReader
    if not (path / "data.mdb").is_file():
        return None
    with StrLmdbReader(str(path)) as reader:
        return reader.state


@pytest.fixture(scope="module")
def synth_source(bench_mini_dir, tmp_path_factory):
    return write_ic13_regions(bench_mini_dir, tmp_path_factory.mktemp("dist_synth"))


@pytest.fixture(scope="module")
def one_process_set(tiny_model, synth_source):
    """The uninterrupted run, in this process: texts, crop windows and noise depend only on (seed, region,
    variant), so its records carry the labels, order and sizes of any process count's (the pixels may differ in
    their last bits with the batches' make-up)."""
    from textssr.synth.runner import synthesize
    out = synth_source.parent / "uninterrupted"
    synthesize(SynthSettings.load(str(REPO / "configs/tiny/synth_cfg.py"), synth_options(tiny_model, synth_source, out)))
    return out


def kill_launch(proc) -> None:
    """SIGKILL a launch as a crash would: the ranks (torchrun starts each in a session of its own, so they would
    outlive their launcher), then the launcher; wait until all are gone."""
    import psutil
    launcher = psutil.Process(proc.pid)
    ranks = launcher.children(recursive=True)
    for p in ranks + [launcher]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    _, alive = psutil.wait_procs(ranks, timeout=60)
    assert not alive, alive


@pytest.fixture(scope="module")
def killed_two_process_run(tiny_model, synth_source):
    """A 2-process synthesis SIGKILLed (both ranks and the launcher) once a rank has committed a batch, before
    the merge. Returns its output folder, untouched (tests copy it)."""
    out = synth_source.parent / "killed"
    shards = [out / "shards" / f"rank{r}-of-2" for r in (0, 1)]
    proc = subprocess.Popen(launch_cmd("synthesize.py", *synth_cli(tiny_model, synth_source, out)), cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = False
    try:
        while proc.poll() is None:
            states = [shard_state(s) for s in shards]
            if any(s and s["cursor"] > 0 and not s["done"] for s in states):
                kill_launch(proc)
                killed = True
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            kill_launch(proc)
    assert killed, "the run ended before it could be killed mid-way"
    assert not (out / "lmdb").exists() and not all((s.parent / (s.name + ".done")).exists() for s in shards)
    return out


def test_killed_two_process_synthesis_resumes_to_the_uninterrupted_set(tiny_model, synth_source, one_process_set,
                                                                       killed_two_process_run, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(killed_two_process_run, out)
    shards = [out / "shards" / f"rank{r}-of-2" for r in (0, 1)]
    before = [records(s) if shard_state(s) else [] for s in shards]
    assert any(before)
    run = launch("synthesize.py", *synth_cli(tiny_model, synth_source, out, keep_shards=True))  # a non-content key
    assert run.returncode == 0, run.stderr[-3000:]
    for shard, kept in zip(shards, before):  # each rank continued its shard: what it had committed stays, once
        after = records(shard)
        assert after[:len(kept)] == kept and len(after) == 9
    resumed, uninterrupted = records(out / "lmdb"), records(one_process_set / "lmdb")
    assert len(resumed) == 18 and [r[1:] for r in resumed] == [r[1:] for r in uninterrupted]  # labels, order, sizes
    assert len(set(r[0] for r in resumed)) == 18  # no crop written twice
    stats, expected = (json.loads((d / "stats.json").read_text()) for d in (out, one_process_set))
    for key in ("regions_read", "items", "generated", "kept", "skipped", "skipped_items", "num_samples"):
        assert stats[key] == expected[key], key
    assert stats["processes"] == 2


def test_synthesis_started_on_two_processes_refuses_a_one_process_resume(tiny_model, synth_source,
                                                                         killed_two_process_run, tmp_path):
    from textssr.synth.runner import synthesize
    out = tmp_path / "other_count"
    shutil.copytree(killed_two_process_run, out)
    with pytest.raises(ConfigError, match="--num_processes 2") as err:
        synthesize(SynthSettings.load(str(REPO / "configs/tiny/synth_cfg.py"), synth_options(tiny_model, synth_source, out)))
    assert "\n" not in str(err.value)


def test_synthesis_started_on_one_process_refuses_a_two_process_resume(tiny_model, synth_source, tmp_path,
                                                                       monkeypatch):
    from textssr.synth.runner import synthesize
    from textssr.synth.str_lmdb import StrLmdbWriter
    out = tmp_path / "one"
    real_commit = StrLmdbWriter.commit

    def commit_then_interrupt(self, records, state=None):  # Ctrl-C after the first committed batch
        real_commit(self, records, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(StrLmdbWriter, "commit", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        synthesize(SynthSettings.load(str(REPO / "configs/tiny/synth_cfg.py"), synth_options(tiny_model, synth_source, out)))
    monkeypatch.setattr(StrLmdbWriter, "commit", real_commit)
    assert not shard_state(out / "lmdb")["done"]
    run = launch("synthesize.py", *synth_cli(tiny_model, synth_source, out))
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("--num_processes 1" in line for line in errors), run.stderr[-3000:]
    assert not (out / "shards").exists() and shard_state(out / "lmdb")["world_size"] == 1
