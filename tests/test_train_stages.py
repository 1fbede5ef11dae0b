"""The three training stages on the tiny corpus: they train, checkpoint as documented, resume exactly, chain
(VAE → step 1 → step 2), and run under `accelerate launch --cpu --num_processes 2`."""
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

from textssr.config.run_config import read_run_config
from textssr.train.settings import TrainSettings, CDMSettings
from textssr.train import train
from textssr.train.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[1]
RES = 32  # crops of 32 px: every run below takes seconds
TINY = dict(resolution=RES, train_batch_size=2, gradient_accumulation_steps=1, dataloader_num_workers=0,
            report_to=None, logging_steps=1, mixed_precision="no")  # "auto" times the machine: not reproducible
# The CDM options the tiny configs take for speed, set back to the original's where a test needs it reproducible
# (timed choices) or compares posterior samples (the latent cache needs vae_latents="mode").
CDM = dict(vae_dtype=None, latent_cache=False, region_placement="random")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The embedded tiny corpus, 8 images: AnyWord-lmdb/step1_lmdb and step2_lmdb."""
    from textssr.data.tiny_data import generate
    out = tmp_path_factory.mktemp("train_corpus")
    generate(out, num_images=8, bench_images=2, seed=11)
    return out / "AnyWord-lmdb"


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each in-process run builds its own Accelerator; the state singletons must not leak between tests."""
    yield
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def tiny_cfg(name: str, **options):
    cls = TrainSettings if name == "train_vae_cfg.py" else CDMSettings
    return cls.load(str(REPO / "configs" / "tiny" / name), {**TINY, **options})


def read_log(output_dir):
    return [json.loads(line) for line in open(os.path.join(output_dir, "train_log.jsonl"))]


def weights(folder):
    from safetensors.torch import load_file
    return load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))


def max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="session")
def vae_run(corpus, tmp_path_factory):
    """The tiny VAE stage, 3 steps, a checkpoint every step, keeping the newest 2."""
    out = tmp_path_factory.mktemp("vae_ft")
    cfg = tiny_cfg("train_vae_cfg.py", output_dir=str(out), max_train_steps=3, checkpointing_steps=1,
                   checkpoints_total_limit=2,
                   lmdb_path=[str(corpus / "step1_lmdb"), str(corpus / "step2_lmdb")])
    state = train(cfg, "vae")
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return out, state


def cdm_cfg(corpus, vae_run, out, **options):
    return tiny_cfg("train_diff_step1_cfg.py", **{"output_dir": str(out), "lmdb_path": str(corpus / "step1_lmdb"),
                                                   "pretrained_vae": str(vae_run[0]), "max_train_steps": 2,
                                                   "checkpointing_steps": 2, **CDM, **options})


def test_vae_stage_trains_and_checkpoints(vae_run):
    out, state = vae_run
    assert state["global_step"] == 3
    losses = [r["loss"] for r in read_log(out) if r["event"] == "step"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert [step for step, _ in list_checkpoints(out)] == [2, 3]  # checkpoints_total_limit=2 pruned checkpoint-1
    ckpt = out / "checkpoint-3"
    for name in ("vae/config.json", "vae/diffusion_pytorch_model.safetensors", "optimizer.bin", "scheduler.bin",
                 "random_states_0.pkl", "generator_0.pt", "settings.json", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    assert not (ckpt / "model.safetensors").exists()  # the model is saved once, in diffusers format
    assert (out / "settings.json").is_file()
    assert read_run_config(str(ckpt))["resolution"] == RES  # the resolved settings travel with it, as data
    assert max_diff(weights(out / "checkpoint-2" / "vae"), weights(ckpt / "vae")) > 0  # the weights moved
    assert not any(name.startswith(".tmp-") for name in os.listdir(out))


def test_vae_scaling_factor_auto(vae_run, corpus, tmp_path):
    """scaling_factor="auto" (the tiny config) stores 1 / std of the posterior-mode latents of the first crops
    trained on; a number is stored as given."""
    from textssr.models import load_vae
    from textssr.train.stages import VAEStage
    out, _ = vae_run
    saved = json.loads((out / "checkpoint-3" / "vae" / "config.json").read_text())["scaling_factor"]
    assert saved != pytest.approx(0.18215) and saved > 0
    assert load_vae(str(out)).config.scaling_factor == pytest.approx(saved)
    stage = VAEStage()
    stage.build(tiny_cfg("train_vae_cfg.py", scaling_factor="auto"))
    crops = torch.rand(2, 3, RES, RES) * 2 - 1
    for _ in range(40):  # 80 crops offered, the first 64 kept
        stage._keep_for_scaling(crops)
    assert sum(len(x) for x in stage.scaling_images) == VAEStage.scaling_crops
    with torch.no_grad():
        std = stage.model.encode(torch.cat(stage.scaling_images)).latent_dist.mode().std().item()
    assert stage.scaling_factor() == pytest.approx(1 / std, rel=1e-4)
    stage.cfg = tiny_cfg("train_vae_cfg.py", scaling_factor=0.5)
    assert stage.scaling_factor() == 0.5
    stage.cfg = tiny_cfg("train_vae_cfg.py", scaling_factor=None)
    assert stage.scaling_factor() is None


@pytest.mark.parametrize("vae_latents", ["sample", "mode"])
def test_cdm_vae_latents(corpus, vae_run, tmp_path, vae_latents):
    """vae_latents="sample" draws training latents from the posterior (the original); "mode" takes its mean."""
    from textssr.data import AnyWordLmdbDataset, collate
    from textssr.train.stages import CDMStage
    cfg = cdm_cfg(corpus, vae_run, tmp_path, vae_latents=vae_latents)
    stage = CDMStage()
    stage.build(cfg)
    dataset = AnyWordLmdbDataset(str(corpus / "step1_lmdb"), resolution=RES, ttf_size=64, max_len=25)
    batch = collate([dataset[0], dataset[1]])
    first = stage.encode(batch, torch.Generator().manual_seed(1))[0]
    second = stage.encode(batch, torch.Generator().manual_seed(2))[0]
    with torch.no_grad():
        mean = stage.vae.encode(batch["image"]).latent_dist.mode() * stage.vae.config.scaling_factor
    if vae_latents == "mode":
        assert torch.equal(first, second) and torch.allclose(first, mean, atol=1e-5)
    else:
        assert not torch.allclose(first, second) and not torch.allclose(first, mean, atol=1e-3)


def test_cdm_vae_dtype_bf16(corpus, vae_run, tmp_path):
    """vae_dtype="bf16" encodes with a bfloat16 VAE while the UNet stays float32: float32 latents close to the
    float32 VAE's."""
    from textssr.data import AnyWordLmdbDataset, collate
    from textssr.train.stages import CDMStage
    dataset = AnyWordLmdbDataset(str(corpus / "step1_lmdb"), resolution=RES, ttf_size=64, max_len=25)
    batch = collate([dataset[0], dataset[1]])
    latents = {}
    for dtype in (None, "bf16"):
        stage = CDMStage()
        unet = stage.build(cdm_cfg(corpus, vae_run, tmp_path, vae_latents="mode", vae_dtype=dtype))
        stage.setup(type("Acc", (), {"device": torch.device("cpu")})(), torch.float32)
        assert stage.vae.dtype == (torch.bfloat16 if dtype else torch.float32) and unet.dtype == torch.float32
        latents[dtype] = stage.encode(batch, torch.Generator())[0]
    assert latents["bf16"].dtype == torch.float32
    scale = latents[None].abs().max()
    assert (latents["bf16"] - latents[None]).abs().max() < 0.05 * scale


def test_cdm_text_loss_weight_and_x0(corpus, vae_run, tmp_path):
    """text_loss_weight w > 1 scales the text area's squared errors by w (so the loss grows, by at most w);
    prediction_type="sample" regresses the clean latents; 1.0 with no snr_gamma is the original's plain MSE."""
    from textssr.data import AnyWordLmdbDataset, collate
    from textssr.train.stages import CDMStage
    dataset = AnyWordLmdbDataset(str(corpus / "step1_lmdb"), resolution=RES, ttf_size=64, max_len=25)
    batch = collate([dataset[0], dataset[1]])
    losses = {}
    for weight in (1.0, 4.0):
        cfg = cdm_cfg(corpus, vae_run, tmp_path, prediction_type="sample", text_loss_weight=weight,
                      vae_latents="mode")
        stage = CDMStage()
        model = stage.build(cfg)
        with torch.no_grad():
            losses[weight] = stage.loss(model, batch, torch.Generator().manual_seed(5)).item()
        assert stage.noise_scheduler.config.prediction_type == "sample"
    assert losses[1.0] < losses[4.0] < 4 * losses[1.0]
    # x0 target: a model that returns the clean latents has zero loss
    stage.cfg = cdm_cfg(corpus, vae_run, tmp_path, prediction_type="sample", vae_latents="mode")
    clean = stage.encode(batch, torch.Generator())[0]

    class Oracle(torch.nn.Module):
        def forward(self, sample, timesteps, encoder_hidden_states):
            return type("Out", (), {"sample": clean})()

    assert stage.loss(Oracle(), batch, torch.Generator().manual_seed(5)).item() == pytest.approx(0.0, abs=1e-10)


def test_rerunning_a_finished_run_trains_nothing(corpus, vae_run, tmp_path):
    """`make demo` run twice: the second run of a finished stage resumes at max_train_steps and stops there — no
    extra step, no new checkpoint, the weights untouched (later stages and infer.py keep their inputs)."""
    out = tmp_path / "again"
    cfg = cdm_cfg(corpus, vae_run, out)
    assert train(cfg, "cdm")["global_step"] == 2
    before = weights(out / "checkpoint-2" / "unet")
    state = train(cdm_cfg(corpus, vae_run, out), "cdm")
    assert state["global_step"] == 2
    assert [step for step, _ in list_checkpoints(out)] == [2]
    assert max_diff(before, weights(out / "checkpoint-2" / "unet")) == 0


def test_timestep_weights():
    """"later"/"earlier" weigh the last/first portion of the range by the multiplier, "range" [begin, end); each
    sums to 1; "none" is uniform."""
    from textssr.train.stages import timestep_weights
    uniform = timestep_weights(1000, "none", 5.0)
    assert torch.allclose(uniform, torch.full((1000,), 1e-3, dtype=torch.float64))
    later = timestep_weights(1000, "later", 4.0, portion=0.25)
    assert later.sum().item() == pytest.approx(1.0)
    assert later[750:].sum().item() == pytest.approx(1000 / 1750)  # 250 × 4 against 750 × 1
    assert later[749].item() == pytest.approx(later[0].item()) and later[750] == pytest.approx(4 * later[0])
    earlier = timestep_weights(1000, "earlier", 4.0, portion=0.25)
    assert torch.equal(earlier, later.flip(0))
    ranged = timestep_weights(1000, "range", 9.0, begin=900, end=1000)
    assert ranged[900:].sum().item() == pytest.approx(900 / 1800)
    with pytest.raises(ValueError, match="timestep_bias_strategy"):
        timestep_weights(1000, "late", 2.0)
    with pytest.raises(ValueError, match="select none"):  # past the schedule's end: would silently be uniform
        timestep_weights(1000, "range", 9.0, begin=1000, end=2000)


def test_cdm_biased_timesteps_follow_the_weights(corpus, vae_run, tmp_path):
    """The CDM stage draws its training timesteps from the bias weights, reproducibly from the generator."""
    from textssr.train.stages import CDMStage
    stage = CDMStage()
    stage.build(cdm_cfg(corpus, vae_run, tmp_path, timestep_bias_strategy="range", timestep_bias_multiplier=50.0,
                        timestep_bias_begin=900, timestep_bias_end=1000))
    draws = stage.sample_timesteps(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    again = stage.sample_timesteps(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(draws, again) and draws.min() >= 0 and draws.max() <= 999
    share = (draws >= 900).float().mean().item()  # expected 100 × 50 / (900 + 100 × 50) ≈ 0.847
    assert 0.82 < share < 0.87
    stage.build(cdm_cfg(corpus, vae_run, tmp_path, timestep_bias_strategy="none"))  # the original: uniform
    assert stage.timestep_probs is None
    uniform = stage.sample_timesteps(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert 0.08 < (uniform >= 900).float().mean().item() < 0.12


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_cdm_step1_from_sd21_layout(corpus, vae_run, tmp_path, prediction_type):
    """Step 1 starts from an SD-2.1-layout folder (4-channel unet widened to 13) and trains either target."""
    from tiny_models import save_tiny_sd21
    sd = tmp_path / "sd21"
    save_tiny_sd21(str(sd), tiny_cfg("train_vae_cfg.py").vae_arch, tiny_cfg("train_diff_step1_cfg.py").unet_arch)
    out = tmp_path / "step1"
    cfg = cdm_cfg(corpus, vae_run, out, pretrained_model_name_or_path=str(sd), prediction_type=prediction_type)
    state = train(cfg, "cdm")
    assert state["global_step"] == 2
    losses = [r["loss"] for r in read_log(out) if r["event"] == "step"]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    ckpt = out / "checkpoint-2"
    unet = weights(ckpt / "unet")
    assert unet["conv_in.weight"].shape[1] == 13
    assert any(k.startswith("ttf_net.") for k in unet)
    sched = json.loads((ckpt / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == prediction_type
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == prediction_type
    sd_unet = weights(sd / "unet")
    assert max_diff({k: v for k, v in unet.items() if k in sd_unet and k != "conv_in.weight"}, sd_unet) > 0


@pytest.fixture(scope="session")
def step1_run(corpus, vae_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("step1")
    train(cdm_cfg(corpus, vae_run, out), "cdm")
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return out


def test_step2_starts_from_step1_weights(corpus, vae_run, step1_run, tmp_path):
    out = tmp_path / "step2"
    cfg = tiny_cfg("train_diff_step2_cfg.py", output_dir=str(out), lmdb_path=str(corpus / "step2_lmdb"),
                   pretrained_vae=str(vae_run[0]), pretrained_unet=str(step1_run), max_train_steps=1,
                   checkpointing_steps=1, learning_rate=1e-12, adam_weight_decay=0.0)
    train(cfg, "cdm")
    step1 = weights(step1_run / "checkpoint-2" / "unet")
    step2 = weights(out / "checkpoint-1" / "unet")
    assert max_diff(step2, step1) < 1e-6  # one step at lr 1e-12 from step 1's weights
    from accelerate.utils import set_seed
    from textssr.models import load_unet
    set_seed(cfg.seed)
    fresh = load_unet(None, unet_arch=cfg.unet_arch).state_dict()  # what step 2 would be without step 1
    assert max_diff(step2, fresh) > 1e-3


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args, cwd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_kill_and_resume_continues_at_the_checkpoint(corpus, tmp_path):
    """SIGKILL after the first checkpoint; the same command resumes from the newest complete checkpoint and ends
    at max_train_steps without redoing any checkpointed step."""
    out = tmp_path / "vae"
    cmd = [sys.executable, str(REPO / "train_vae.py"), "--config", str(REPO / "configs/tiny/train_vae_cfg.py"),
           "--cfg-options", f"output_dir={out}", f"lmdb_path={corpus / 'step1_lmdb'}", f"resolution={RES}",
           "train_batch_size=2", "dataloader_num_workers=0", "report_to=None", "logging_steps=1",
           "max_train_steps=60", "checkpointing_steps=2", "checkpoints_total_limit=None"]
    first = _launch(cmd, REPO)
    deadline = time.time() + 120
    while not list_checkpoints(out) and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stdout.read()
    saved = max(step for step, _ in list_checkpoints(out))
    assert 2 <= saved < 60
    second = _launch(cmd, REPO)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    log = read_log(out)
    starts = [r for r in log if r["event"] == "start"]
    assert [s["step"] for s in starts] == [0, saved]
    assert starts[1]["resumed_from"].endswith(f"checkpoint-{saved}")
    resumed = log[log.index(starts[1]):]
    steps = [r["step"] for r in resumed if r["event"] == "step"]
    assert steps == list(range(saved + 1, 61))  # each step once, none redone
    assert resumed[-1]["event"] == "end" and resumed[-1]["step"] == 60
    assert max(step for step, _ in list_checkpoints(out)) == 60
    assert not any(name.startswith(".tmp-") for name in os.listdir(out))


@pytest.mark.parametrize("stage", ["vae", "cdm"])
def test_resume_reproduces_an_uninterrupted_run(corpus, vae_run, tmp_path, stage):
    """3 steps, stop, resume to 8 == 8 steps straight: weights, optimizer, generator, data order and position
    all restored. An epoch is 6 steps here: the resume skips 3 consumed batches, then crosses an epoch boundary."""
    from accelerate.state import AcceleratorState, GradientState

    def run(out, steps):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        if stage == "vae":
            cfg = tiny_cfg("train_vae_cfg.py", output_dir=str(out), lmdb_path=str(corpus / "step1_lmdb"),
                           max_train_steps=steps, checkpointing_steps=4, checkpoints_total_limit=None)
        else:
            cfg = cdm_cfg(corpus, vae_run, out, max_train_steps=steps, checkpointing_steps=4,
                          checkpoints_total_limit=None)
        return train(cfg, stage)

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(straight, 8)["steps_per_epoch"] == 6
    run(split, 3)
    assert run(split, 8)["global_step"] == 8
    sub = "vae" if stage == "vae" else "unet"
    assert max_diff(weights(straight / "checkpoint-8" / sub), weights(split / "checkpoint-3" / sub)) > 0
    assert max_diff(weights(straight / "checkpoint-8" / sub), weights(split / "checkpoint-8" / sub)) == 0


def test_sample_grid_in_tensorboard(corpus, vae_run, tmp_path):
    """Every image_log_steps a grid of pipeline samples (masked image, glyph, sample, real crop) is logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "tb"
    train(cdm_cfg(corpus, vae_run, out, report_to="tensorboard", max_train_steps=1, checkpointing_steps=1,
                  image_log_steps=1, image_log_count=2, image_log_inference_steps=2), "cdm")
    events = [os.path.join(d, f) for d, _, files in os.walk(out / "logs") for f in files if "tfevents" in f]
    tags = {}
    for path in events:
        acc = EventAccumulator(path)
        acc.Reload()
        tags.update({k: acc for k in acc.Tags()["images"] + acc.Tags()["scalars"]})
    assert "train/loss" in tags and "cdm/samples" in tags
    image = tags["cdm/samples"].Images("cdm/samples")[0]
    assert image.height > image.width  # 4 rows of 2 crops


def test_ranks_read_different_samples(corpus):
    from textssr.train.data import build_dataset, build_loader
    cfg = tiny_cfg("train_diff_step1_cfg.py", lmdb_path=str(corpus / "step1_lmdb"))
    dataset = build_dataset(cfg, vae_mode=False)
    orders = []
    for rank in (0, 1):
        loader = build_loader(dataset, cfg, num_processes=2, process_index=rank)
        loader.sampler.set_epoch(3)
        orders.append(list(loader.sampler))
    assert orders[0] and not set(orders[0]) & set(orders[1])
    again = build_loader(dataset, cfg, num_processes=2, process_index=0)
    again.sampler.set_epoch(3)
    assert list(again.sampler) == orders[0]  # an epoch's order is a function of (seed, epoch, rank)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) launch; on a GPU machine this is plain DDP")
def test_two_cpu_processes(corpus, vae_run, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 train_diff.py` on a machine without GPUs: 2 CPU processes
    in one gloo group (accelerate's `--cpu` alone starts one process unless mpirun is set up), one checkpoint
    holding both ranks' state."""
    out = tmp_path / "step1_ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1", "--num_processes", "2",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(REPO / "train_diff.py"), "--config", str(REPO / "configs/tiny/train_diff_step1_cfg.py"),
           "--cfg-options", f"output_dir={out}", f"lmdb_path={corpus / 'step1_lmdb'}",
           f"pretrained_vae={vae_run[0]}", f"resolution={RES}", "train_batch_size=1", "dataloader_num_workers=0",
           "report_to=None", "max_train_steps=2", "checkpointing_steps=2"]
    proc = _launch(cmd, REPO)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    start = [r for r in read_log(out) if r["event"] == "start"][0]
    assert start["num_processes"] == 2
    ckpt = out / "checkpoint-2"
    for name in ("unet/diffusion_pytorch_model.safetensors", "random_states_0.pkl", "random_states_1.pkl",
                 "generator_0.pt", "generator_1.pt"):
        assert (ckpt / name).is_file(), name
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == 2


def corrupted_lmdb(corpus, tmp_path):
    """A copy of step1_lmdb whose first image's bytes are garbage: its instances fail when a sample is built.
    Returns (path, number of instances of that image)."""
    import lmdb
    import numpy as np
    from textssr.data.lmdb_store import IMAGE_PREFIX, INDEX_KEY, IndexTable
    out = tmp_path / "corrupt_lmdb"
    shutil.copytree(corpus / "step1_lmdb", out)
    env_path = next(p.parent for p in out.rglob("data.mdb"))
    env = lmdb.open(str(env_path), subdir=True)
    with env.begin(write=True) as txn:
        table = IndexTable.decode(txn.get(INDEX_KEY), str(env_path))
        txn.put(IMAGE_PREFIX + table.image_ids.raw(0), b"\xff\xd8 not a jpeg \xff\xd9")
    env.close()
    return out, int(np.sum(table.ann_image == 0))


def test_bad_samples_are_counted_once_through_epochs_workers_and_resume(corpus, tmp_path):
    """Training used to add up every access to a bad sample (and every link of a substitution chain): over 3
    epochs its final "skipped samples" counted the same instances again and again."""
    lmdb_path, bad = corrupted_lmdb(corpus, tmp_path)
    out = tmp_path / "vae_bad"

    def run(steps):
        from accelerate.state import AcceleratorState, GradientState
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        return train(tiny_cfg("train_vae_cfg.py", output_dir=str(out), lmdb_path=str(lmdb_path), max_train_steps=steps,
                              checkpointing_steps=steps, dataloader_num_workers=1), "vae")

    first = run(4)
    epochs = first["epoch"] + 1
    assert first["skipped"] == {"image_unreadable": bad} and len(first["skipped_instances"]) == bad
    state = run(4 + 3 * first["steps_per_epoch"])  # resumed, 3 more epochs
    assert state["epoch"] + 1 > epochs
    assert state["skipped"] == {"image_unreadable": bad} and state["skipped_instances"] == first["skipped_instances"]
    end = [r for r in read_log(out) if r["event"] == "end"][-1]
    assert end["skipped"] == {"image_unreadable": bad}


def test_resume_reads_generator_states_as_weights_only(corpus, vae_run, tmp_path, monkeypatch):
    """A checkpoint is data: the per-rank generator state is loaded with torch.load(weights_only=True)."""
    import textssr.train.checkpoint as ckpt_module
    out = tmp_path / "w"
    train(cdm_cfg(corpus, vae_run, out, max_train_steps=1, checkpointing_steps=1), "cdm")
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    calls = []
    real_load = torch.load

    def load(path, *args, **kwargs):
        calls.append((os.path.basename(str(path)), kwargs.get("weights_only")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "load", load)
    train(cdm_cfg(corpus, vae_run, out, max_train_steps=2, checkpointing_steps=2), "cdm")
    assert ("generator_0.pt", True) in calls


@pytest.mark.parametrize("chosen", ["bf16", "no"])
def test_auto_precisions_follow_the_measurement(corpus, vae_run, tmp_path, fake_precision, chosen):
    """vae_dtype="auto" and mixed_precision="auto" time the first real batch both ways (textssr.runtime.precision.choose,
    faked here both ways) and train with the choice; the probe leaves the training stream untouched."""
    seen = fake_precision(chosen)
    out = tmp_path / f"auto_{chosen}"
    state = train(cdm_cfg(corpus, vae_run, out, vae_dtype="auto", mixed_precision="auto"), "cdm")
    assert seen == [chosen, chosen]  # the VAE's encoding, then the UNet's forward + backward
    want = "bfloat16" if chosen == "bf16" else "float32"
    assert {k: v["dtype"] for k, v in state["precision"].items()} == {"vae_dtype": want, "mixed_precision": want}
    logged = [r for r in read_log(out) if r["event"] == "precision"]
    assert {r["key"]: r["dtype"] for r in logged} == {"vae_dtype": want, "mixed_precision": want}
    if chosen == "no":  # float32 chosen: exactly the weights of a run configured float32 from the start
        from accelerate.state import AcceleratorState, GradientState
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        plain = tmp_path / "plain"
        train(cdm_cfg(corpus, vae_run, plain), "cdm")
        assert max_diff(weights(out / "checkpoint-2/unet"), weights(plain / "checkpoint-2/unet")) == 0


def test_vae_dtype_auto_keeps_the_vae_it_timed_faster(corpus, vae_run, tmp_path, fake_precision):
    from textssr.data import AnyWordLmdbDataset
    from textssr.train.stages import CDMStage
    dataset = AnyWordLmdbDataset(str(corpus / "step1_lmdb"), resolution=RES, ttf_size=64, max_len=25)
    batch = collate_two(dataset)
    for chosen, dtype in (("bf16", torch.bfloat16), ("no", torch.float32)):
        fake_precision(chosen)
        stage = CDMStage()
        stage.build(cdm_cfg(corpus, vae_run, tmp_path, vae_dtype="auto"))
        stage.setup(type("Acc", (), {"device": torch.device("cpu")})(), torch.float32)
        record = stage.first_batch(batch, torch.device("cpu"))
        assert stage.vae.dtype == dtype and record["key"] == "vae_dtype" and "vae_dtype=auto" in record["message"]
    stage = CDMStage()
    stage.build(cdm_cfg(corpus, vae_run, tmp_path, vae_dtype=None))
    assert stage.first_batch(batch, torch.device("cpu")) is None  # nothing to choose


def collate_two(dataset):
    from textssr.data import collate
    return collate([dataset[0], dataset[1]])


def test_profile_splits_the_step_into_phases(corpus, vae_run, tmp_path):
    state = train(cdm_cfg(corpus, vae_run, tmp_path / "prof", max_train_steps=5, checkpointing_steps=5,
                          profile=True), "cdm")
    profile = state["profile_ms"]
    assert profile["steps_counted"] == 3  # the first 2 steps are warm-up
    for phase in ("data", "vae_encode", "forward", "backward", "optimizer", "logging", "checkpoint"):
        assert profile[phase] >= 0.0
    assert profile["forward"] > 0 and profile["backward"] > 0 and profile["vae_encode"] > 0
    phases = sum(v for k, v in profile.items() if k not in ("step", "steps_counted"))
    assert profile["step"] == pytest.approx(phases, abs=0.05)


def test_latent_cache_gives_the_latents_of_a_fresh_encoding(corpus, vae_run, tmp_path):
    """latent_cache=True encodes a sample once; later batches reuse its latents, which equal a fresh encoding."""
    from textssr.data import AnyWordLmdbDataset
    from textssr.train.stages import CDMStage
    cfg = cdm_cfg(corpus, vae_run, tmp_path, latent_cache=True, region_placement="center", vae_latents="mode")
    dataset = AnyWordLmdbDataset(str(corpus / "step1_lmdb"), resolution=RES, ttf_size=64, max_len=25,
                                 region_placement="center")
    stage = CDMStage()
    stage.build(cfg)
    from textssr.data import collate
    first = stage.encode(collate([dataset[0], dataset[1]]), torch.Generator())
    assert sorted(stage.latent_cache) == [0, 1]
    calls = []
    real = stage.vae.encode
    stage.vae.encode = lambda x: (calls.append(x.shape[0]), real(x))[1]
    again = stage.encode(collate([dataset[1], dataset[2], dataset[1]]), torch.Generator())
    assert calls == [3]  # only sample 2 was new: its image, masked image and glyph in one call
    for a, b in zip(first, again):
        assert torch.allclose(a[1], b[0], atol=1e-5)
    assert torch.equal(again[0][0], again[0][2])
    stage.latent_cache = None
    fresh = stage.encode(collate([dataset[1], dataset[2], dataset[1]]), torch.Generator())
    for a, b in zip(again, fresh):
        assert torch.allclose(a, b, atol=1e-4)


def test_original_options_scale_lr_epochs_tf32_and_unused_parameters(corpus, tmp_path):
    """The original's options kept from its configs, each doing what it says: scale_lr multiplies the rate by
    batch × accumulation × processes, num_train_epochs bounds a run without max_train_steps, allow_tf32 switches
    TF32 matmuls on, find_unused_parameters reaches DDP."""
    from accelerate.state import AcceleratorState, GradientState
    from textssr.train.loop import _accelerator
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    out = tmp_path / "epochs"
    try:
        state = train(tiny_cfg("train_vae_cfg.py", output_dir=str(out), lmdb_path=str(corpus / "step1_lmdb"),
                               max_train_steps=None, num_train_epochs=2, checkpointing_steps=100, scale_lr=True,
                               learning_rate=1e-4, lr_scheduler="constant", allow_tf32=True), "vae")
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")  # torch's current TF32 API
    finally:
        matmul.fp32_precision, conv.fp32_precision = before
    assert state["global_step"] == 2 * state["steps_per_epoch"] and state["epoch"] == 1
    lrs = {round(r["lr"], 12) for r in read_log(out) if r["event"] == "step"}
    assert lrs == {round(1e-4 * TINY["train_batch_size"] * TINY["gradient_accumulation_steps"], 12)}
    for flag in (True, False):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        cfg = tiny_cfg("train_vae_cfg.py", output_dir=str(tmp_path / "ddp"), find_unused_parameters=flag)
        handler = _accelerator(cfg, "no").ddp_handler
        assert handler.find_unused_parameters is flag
        assert handler.gradient_as_bucket_view  # no second full copy of the gradients under DDP
