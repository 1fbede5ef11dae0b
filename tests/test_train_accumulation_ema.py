"""Training with the original's options the tiny configs leave off: gradient accumulation (the full-scale configs
use 8; the resume arithmetic depends on it) and EMA (saved as ``<model>_ema/``, restored on resume, usable by
infer.py). Tiny models, 32-px crops, a few steps each; 3 steps + resume == straight, bit for bit."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reset_accelerate
from textssr.infer.settings import InferSettings
from textssr.train.settings import CDMSettings, STAGE_SETTINGS
from textssr.config import load_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")
RES = 32
TINY = dict(resolution=RES, train_batch_size=2, dataloader_num_workers=0, report_to=None, logging_steps=1,
            mixed_precision="no", checkpoints_total_limit=None, checkpointing_steps=100)
CDM = dict(vae_dtype=None, latent_cache=False, region_placement="random")  # reproducible, as test_train_stages
ACCUM = 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The embedded tiny corpus, 8 images (as tests/test_train_stages.py)."""
    from textssr.data.tiny_data import generate
    out = tmp_path_factory.mktemp("accum_corpus")
    generate(out, num_images=8, bench_images=2, seed=11)
    return out / "AnyWord-lmdb"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import save_tiny_sd21
    return Path(save_tiny_sd21(str(tmp_path_factory.mktemp("accum_sd21"))))


def weights(folder):
    from safetensors.torch import load_file
    return load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))


def identical(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(name, **options):
    from textssr.train import train as run
    reset_accelerate()
    stage = "vae" if name == "train_vae_cfg.py" else "cdm"
    cfg = STAGE_SETTINGS[stage].load(str(REPO / "configs" / "tiny" / name), {**TINY, **options})
    return run(cfg, stage)


def steps_logged(out):
    return [json.loads(line) for line in open(out / "train_log.jsonl")]


@pytest.fixture
def count_batches(monkeypatch):
    """Counts the forward passes (stage.loss calls) of the training loop."""
    from textssr.train.stages import CDMStage, VAEStage
    calls = []
    for cls in (VAEStage, CDMStage):
        real = cls.loss

        def loss(self, *args, _real=real, **kwargs):
            calls.append(1)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "loss", loss)
    return calls


def test_gradient_accumulation_counts_optimizer_steps_and_resumes_exactly(corpus, tmp_path, count_batches):
    """accum 2: a step is 2 batches, an epoch is (batches // 2) steps, and a run stopped mid-epoch and resumed (the
    resume skips the batches already consumed, then crosses an epoch boundary) gives the weights of a straight run."""
    from textssr.data import AnyWordLmdbDataset
    lmdb_path = str(corpus / "step1_lmdb")
    batches = len(AnyWordLmdbDataset(lmdb_path, resolution=RES, vae_mode=True)) // TINY["train_batch_size"]
    per_epoch = batches // ACCUM
    assert per_epoch >= 2
    stop, total = per_epoch - 1, per_epoch + 2  # stopped mid-epoch 0; the whole run ends in epoch 1
    straight, split = tmp_path / "straight", tmp_path / "split"
    options = dict(lmdb_path=lmdb_path, gradient_accumulation_steps=ACCUM)

    state = train("train_vae_cfg.py", output_dir=str(straight), max_train_steps=total, **options)
    assert state["global_step"] == total and state["steps_per_epoch"] == per_epoch and state["epoch"] == 1
    assert len(count_batches) == total * ACCUM
    assert [r["step"] for r in steps_logged(straight) if r["event"] == "step"] == list(range(1, total + 1))

    del count_batches[:]
    assert train("train_vae_cfg.py", output_dir=str(split), max_train_steps=stop, **options)["global_step"] == stop
    assert len(count_batches) == stop * ACCUM
    del count_batches[:]
    state = train("train_vae_cfg.py", output_dir=str(split), max_train_steps=total, **options)
    assert state["global_step"] == total and len(count_batches) == (total - stop) * ACCUM
    assert [s["step"] for s in steps_logged(split) if s["event"] == "start"] == [0, stop]
    final = weights(straight / f"checkpoint-{total}/vae")
    assert not identical(weights(split / f"checkpoint-{stop}/vae"), final)
    assert identical(weights(split / f"checkpoint-{total}/vae"), final)


def cdm_options(corpus, tiny_model, out, steps, **extra):
    return dict(CDM, output_dir=str(out), lmdb_path=str(corpus / "step1_lmdb"), pretrained_vae=str(tiny_model / "vae"),
                max_train_steps=steps, gradient_accumulation_steps=ACCUM, use_ema=True, ema_decay=0.9, **extra)


@pytest.fixture(scope="module")
def ema_runs(corpus, tiny_model, tmp_path_factory):
    """CDM step 1 with use_ema and accum 2: 6 steps straight, and 3 steps + resume to 6."""
    root = tmp_path_factory.mktemp("ema")
    train("train_diff_step1_cfg.py", **cdm_options(corpus, tiny_model, root / "straight", 6))
    train("train_diff_step1_cfg.py", **cdm_options(corpus, tiny_model, root / "split", 3))
    train("train_diff_step1_cfg.py", **cdm_options(corpus, tiny_model, root / "split", 6))
    reset_accelerate()
    return root


def test_ema_is_updated_each_optimizer_step_saved_and_restored_on_resume(ema_runs, corpus, tiny_model):
    from accelerate.utils import set_seed
    from textssr.train.stages import CDMStage
    straight, split = ema_runs / "straight", ema_runs / "split"
    for out, step in ((straight, 6), (split, 3), (split, 6)):
        ema_dir = out / f"checkpoint-{step}" / "unet_ema"
        assert (ema_dir / "diffusion_pytorch_model.safetensors").is_file()
        assert json.loads((ema_dir / "config.json").read_text())["optimization_step"] == step  # per optimizer step
    cfg = CDMSettings.load(str(REPO / "configs/tiny/train_diff_step1_cfg.py"),
                      {**TINY, **cdm_options(corpus, tiny_model, ema_runs / "unused", 6)})
    set_seed(cfg.seed)  # what train() builds before its first step
    initial = {k: v.contiguous() for k, v in CDMStage().build(cfg).state_dict().items()}
    ema, model = weights(straight / "checkpoint-6/unet_ema"), weights(straight / "checkpoint-6/unet")
    assert ema.keys() == model.keys() == initial.keys()
    assert not identical(ema, model) and not identical(ema, initial)
    assert identical(weights(split / "checkpoint-6/unet"), model)
    assert identical(weights(split / "checkpoint-6/unet_ema"), ema)  # the EMA was restored, not restarted
    assert not identical(weights(split / "checkpoint-3/unet_ema"), ema)


def test_infer_runs_on_the_ema_weights_of_a_checkpoint(ema_runs, tiny_model, bench_mini_dir, tmp_path):
    """pretrained_unet = checkpoint-N/unet_ema: infer loads the EMA UNet (with the checkpoint's scheduler and
    training sizes) and draws other crops than from checkpoint-N/unet."""
    from textssr.infer import run_inference
    ic13 = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    bench = dict(data_root=str(bench_mini_dir / "benchmark/ic13/images"), data_list=[ic13["data_list"][4]])
    (tmp_path / "bench.json").write_text(json.dumps(bench), encoding="utf-8")
    checkpoint = ema_runs / "straight" / "checkpoint-6"
    metas = {}
    for sub in ("unet", "unet_ema"):
        cfg = InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), dict(
            bench=str(tmp_path / "bench.json"), output_dir=str(tmp_path / sub), pretrained_vae=str(tiny_model / "vae"),
            pretrained_unet=str(checkpoint / sub), num_inference_steps=1, device="cpu", mixed_precision="no"))
        metas[sub] = run_inference(cfg)
    for sub, meta in metas.items():
        assert meta["checkpoints"]["unet"] == str(checkpoint / sub)
        assert meta["checkpoints"]["scheduler"] == str(checkpoint / "scheduler")
        assert meta["conditions"]["resolution"] == RES and meta["counts"]["written"] == 2
    names = sorted(os.listdir(tmp_path / "unet" / "local"))
    assert names == sorted(os.listdir(tmp_path / "unet_ema" / "local"))
    crops = {sub: [np.asarray(Image.open(tmp_path / sub / "local" / n)) for n in names] for sub in ("unet", "unet_ema")}
    assert any(not np.array_equal(a, b) for a, b in zip(crops["unet"], crops["unet_ema"]))
