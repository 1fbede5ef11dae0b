"""What `accelerate launch --num_processes 8` on CUDA nodes relies on, checked on the CPU: the mixed precision taken
from accelerate, the process-group timeout, the GPU "auto" precision decided on each rank's own device, numerics
that stop loudly, option pairs refused at start-up, and the standard GPU switches."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from textssr.infer.settings import InferSettings
from textssr.train.settings import TrainSettings, CDMSettings
from textssr.runtime import distributed, precision
from textssr.config.checks import RunStopped
from textssr.config import ConfigError, load_config
from textssr.runtime.precision import MixedPrecision, resolve_mixed_precision
from textssr.train import train

REPO = Path(__file__).resolve().parents[1]
RES = 32
TINY = dict(resolution=RES, train_batch_size=2, gradient_accumulation_steps=1, dataloader_num_workers=0,
            report_to=None, logging_steps=1, mixed_precision="no")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
ENV.pop(precision.ACCELERATE_ENV, None)


@pytest.fixture(autouse=True)
def fresh_state(fresh_accelerate_state):
    yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from textssr.data.tiny_data import generate
    out = tmp_path_factory.mktemp("gpu_path_corpus")
    generate(out, num_images=4, bench_images=1, seed=5)
    return out / "AnyWord-lmdb"


@pytest.fixture
def no_accelerate_setting(monkeypatch, tmp_path):
    """Neither a launch flag nor a default config file."""
    monkeypatch.delenv(precision.ACCELERATE_ENV, raising=False)
    monkeypatch.setattr("accelerate.commands.config.default_config_file", str(tmp_path / "none.yaml"))
    return tmp_path


def vae_cfg(corpus, out, **options):
    return TrainSettings.load(str(REPO / "configs/tiny/train_vae_cfg.py"),
                       {**TINY, "output_dir": str(out), "lmdb_path": str(corpus / "step1_lmdb"),
                        "max_train_steps": 2, "checkpointing_steps": 2, **options})


def read_log(out):
    return [json.loads(line) for line in open(os.path.join(out, "train_log.jsonl"))]


# ----------------------------------------------------------------------------- mixed_precision=None = accelerate's


def test_none_takes_the_launch_setting(monkeypatch, no_accelerate_setting):
    monkeypatch.setenv(precision.ACCELERATE_ENV, "bf16")
    mixed = resolve_mixed_precision(None)
    assert mixed.name == "bf16" and precision.ACCELERATE_ENV in mixed.source


def test_none_under_plain_python_ignores_accelerates_config_file(monkeypatch, no_accelerate_setting):
    """accelerate's Accelerator never reads its default config file (only `accelerate launch` does, and it sets the
    variable): a file saying fp16 must not turn a plain `python infer.py` into an fp16 run."""
    config_file = no_accelerate_setting / "default_config.yaml"
    config_file.write_text("compute_environment: LOCAL_MACHINE\nmixed_precision: fp16\n")
    monkeypatch.setattr("accelerate.commands.config.default_config_file", str(config_file))
    mixed = resolve_mixed_precision(None)
    assert mixed.name == "no" and precision.ACCELERATE_ENV in mixed.source
    from accelerate import Accelerator
    assert Accelerator(cpu=True).mixed_precision == mixed.name  # what accelerate itself does


def test_an_explicit_value_wins_over_the_launch_flag_with_a_warning(monkeypatch, no_accelerate_setting):
    monkeypatch.setenv(precision.ACCELERATE_ENV, "bf16")
    with pytest.warns(UserWarning, match=r"mixed_precision='no'.*overrides accelerate's 'bf16'"):
        assert resolve_mixed_precision("no") == MixedPrecision("no", "the config")
    monkeypatch.setenv(precision.ACCELERATE_ENV, "no")  # accelerate's default is no setting: nothing to warn
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_mixed_precision("auto").name == "auto"


def test_full_size_configs_say_none_as_the_original():
    for name in ("train_vae_cfg.py", "train_diff_step1_cfg.py", "train_diff_step2_cfg.py", "infer_cfg.py"):
        assert load_config(str(REPO / "configs" / name)).mixed_precision is None, name


def test_launch_flag_bf16_is_in_effect_for_a_none_config(corpus, tmp_path):
    """`accelerate launch --cpu --mixed_precision bf16 train_vae.py ... mixed_precision=None` trains under bf16 and
    logs it with where it came from."""
    out = tmp_path / "vae"
    options = {**TINY, "mixed_precision": None, "output_dir": str(out), "lmdb_path": str(corpus / "step1_lmdb"),
               "max_train_steps": 1, "checkpointing_steps": 1}
    args = [f"{k}={v}" for k, v in options.items()]
    run = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                          "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                          "train_vae.py", "--config", "configs/tiny/train_vae_cfg.py", "--cfg-options", *args],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(r for r in read_log(out) if r["event"] == "precision_setting")
    assert line["dtype"] == "bfloat16" and line["setting"] == "bf16"
    assert "ACCELERATE_MIXED_PRECISION=bf16" in line["source"]
    assert "mixed precision bf16 (from accelerate launch: ACCELERATE_MIXED_PRECISION=bf16)" in run.stdout


def test_a_launch_setting_the_cpu_cannot_run_is_one_line(corpus, tmp_path, monkeypatch, capsys):
    import train_vae
    monkeypatch.setenv(precision.ACCELERATE_ENV, "fp16")
    with pytest.raises(SystemExit) as exit_:
        train_vae.main(["--config", str(REPO / "configs/tiny/train_vae_cfg.py"), "--cfg-options",
                        "mixed_precision=None", f"output_dir={tmp_path / 'x'}", f"lmdb_path={corpus / 'step1_lmdb'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert "mixed_precision=fp16 (from accelerate launch: ACCELERATE_MIXED_PRECISION=fp16) needs a GPU" in err[0]


def test_generation_resolves_none_and_keeps_it_in_the_resume_rule(monkeypatch, no_accelerate_setting, tmp_path):
    from tiny_models import save_tiny_sd21
    from textssr.generation import resolve_run
    save_tiny_sd21(str(tmp_path / "m"))
    cfg = InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), dict(
        pretrained_vae=str(tmp_path / "m/vae"), pretrained_unet=str(tmp_path / "m/unet"),
        scheduler_path=str(tmp_path / "m/scheduler"), mixed_precision=None, output_dir=str(tmp_path / "o"),
        resolution=32))
    monkeypatch.setenv(precision.ACCELERATE_ENV, "bf16")
    run = resolve_run(cfg, on_cpu=True)
    assert run.dtype == torch.bfloat16 and run.resolved["mixed_precision"] == "bf16"
    monkeypatch.delenv(precision.ACCELERATE_ENV)
    assert resolve_run(cfg, True).dtype == torch.float32


# ----------------------------------------------------------------------------- ddp_timeout


def test_ddp_timeout_values_are_checked():
    base = str(REPO / "configs/tiny/train_vae_cfg.py")
    assert TrainSettings.load(base, {"ddp_timeout": 7200}).ddp_timeout == 7200.0
    for cls, config in ((TrainSettings, base), (InferSettings, str(REPO / "configs/tiny/infer_cfg.py"))):
        for bad in (0, -1, "2h", None):
            with pytest.raises(ConfigError, match="ddp_timeout"):
                cls.from_config(load_config(config), ddp_timeout=bad)
    assert distributed.group_kwargs(30).to_kwargs()["timeout"].total_seconds() == 30


SLOW_SAVE = textwrap.dedent("""
    import os, sys, time
    delay = float(os.environ["SAVE_DELAY"])
    from textssr.train import checkpoint
    prune = checkpoint.prune
    def slow_prune(output_dir, total_limit):  # rank 0 alone, while the others wait in the save's barrier
        time.sleep(delay)
        return prune(output_dir, total_limit)
    checkpoint.prune = slow_prune
    import train_vae
    train_vae.main()
""")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU (gloo) launches")
def test_rank0_slower_than_ddp_timeout_stops_with_its_name(corpus, tmp_path):
    """Two gloo processes; rank 0 spends 12 s in the save path. ddp_timeout=4: the waiting rank stops with one line
    naming ddp_timeout; ddp_timeout=120: the run finishes."""
    script = tmp_path / "slow_save.py"
    script.write_text(SLOW_SAVE)

    def launch(timeout_s, out):
        opts = {**TINY, "output_dir": str(out), "lmdb_path": str(corpus / "step1_lmdb"), "max_train_steps": 1,
                "checkpointing_steps": 1, "ddp_timeout": timeout_s, "train_batch_size": 1}
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
               "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no", str(script),
               "--config", "configs/tiny/train_vae_cfg.py", "--cfg-options", *[f"{k}={v}" for k, v in opts.items()]]
        env = dict(ENV, ACCELERATE_USE_CPU="true", SAVE_DELAY="12", PYTHONPATH=str(REPO))
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    short = launch(4, tmp_path / "short")
    assert short.returncode != 0
    assert "error: rank 1 waited more than ddp_timeout=4 s for the other processes" in short.stderr
    long = launch(120, tmp_path / "long")
    assert long.returncode == 0, long.stderr[-3000:]
    assert (tmp_path / "long/checkpoint-1/trainer_state.json").is_file()


# ----------------------------------------------------------------------------- "auto" on GPUs


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device whose compute capability the test sets; records which device each query names."""
    asked = []

    def install(capability):
        def get_capability(device=None):
            asked.append(torch.device(device))
            return capability
        monkeypatch.setattr(torch.cuda, "get_device_capability", get_capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"GPU sm{capability[0]}{capability[1]}")
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # emulation
        return asked
    return install


def test_auto_on_a_gpu_without_native_bf16_is_fp16_on_the_ranks_own_device(fake_gpu):
    from textssr.train.precision import TrainPrecision
    asked = fake_gpu((7, 0))  # V100: torch.cuda.is_bf16_supported() says True (emulated)
    rank3 = torch.device("cuda", 3)
    chosen = TrainPrecision(MixedPrecision("auto", "the config"), rank3)
    assert chosen.accelerate_name == "fp16" and asked == [rank3]
    assert precision.choose(rank3, None, None).name == "no"  # vae_dtype="auto": bf16 not even timed there
    with pytest.raises(ConfigError, match="bf16 on GPU sm70, which has no native bfloat16"):
        precision.check_gpu_bf16(rank3, mixed_precision="bf16")


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (9, 0)])  # A100 (the boundary), A10/RTX 30xx, H100
def test_auto_on_a_gpu_with_native_bf16_is_bf16(fake_gpu, capability):
    from textssr.train.precision import TrainPrecision
    asked = fake_gpu(capability)
    chosen = TrainPrecision(MixedPrecision("auto", "the config"), torch.device("cuda", 5))
    assert chosen.accelerate_name == "bf16" and asked == [torch.device("cuda", 5)]
    assert "native bfloat16" in chosen.in_effect
    precision.check_gpu_bf16(torch.device("cuda", 5), mixed_precision="bf16")  # allowed


# ----------------------------------------------------------------------------- numerics that fail loudly


def test_non_finite_vae_latents_stop_at_the_first_batch(corpus, tmp_path, monkeypatch):
    from textssr.train.stages import CDMStage
    vae_out = tmp_path / "vae"
    train(vae_cfg(corpus, vae_out, max_train_steps=1, checkpointing_steps=1), "vae")
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    encode = CDMStage._encode
    monkeypatch.setattr(CDMStage, "_encode", lambda self, x, g: encode(self, x, g) * float("inf"))  # overflowed
    cfg = CDMSettings.load(str(REPO / "configs/tiny/train_diff_step1_cfg.py"), {
        **TINY, "output_dir": str(tmp_path / "cdm"), "lmdb_path": str(corpus / "step1_lmdb"),
        "pretrained_vae": str(vae_out), "max_train_steps": 2, "checkpointing_steps": 1, "vae_dtype": None,
        "latent_cache": False, "region_placement": "random"})
    with pytest.raises(RunStopped, match=r'latents of the first batch are not finite.*vae_dtype="fp32"'):
        train(cfg, "cdm")
    assert not list((tmp_path / "cdm").glob("checkpoint-*"))


def test_vae_dtype_fp32_keeps_the_frozen_vae_in_float32():
    from textssr.train.stages import CDMStage
    stage = CDMStage()
    from types import SimpleNamespace
    stage.cfg, stage.vae = SimpleNamespace(vae_dtype="fp32"), torch.nn.Linear(2, 2)
    stage.setup(type("Acc", (), {"device": torch.device("cpu")})(), torch.bfloat16)
    assert stage.vae.weight.dtype == torch.float32
    stage.cfg = SimpleNamespace(vae_dtype=None)
    stage.setup(type("Acc", (), {"device": torch.device("cpu")})(), torch.bfloat16)
    assert stage.vae.weight.dtype == torch.bfloat16  # as mixed_precision, the original's


def test_a_nan_loss_stops_the_run_keeping_the_last_good_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    from textssr.train.stages import VAEStage
    loss, calls = VAEStage.loss, []

    def diverging(self, model, batch, generator):
        calls.append(1)
        value = loss(self, model, batch, generator)
        return value * float("nan") if len(calls) == 3 else value
    monkeypatch.setattr(VAEStage, "loss", diverging)
    out = tmp_path / "vae"
    with pytest.raises(RunStopped, match=r"the loss is nan at step 3.*checkpoint-2"):
        train(vae_cfg(corpus, out, max_train_steps=4, checkpointing_steps=2), "vae")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # nothing saved after the NaN


def test_a_nan_gradient_with_a_finite_loss_stops_the_run(corpus, tmp_path, monkeypatch):
    """A finite loss whose gradients are NaN (an overflow in backward) must stop the run too, before a checkpoint
    of the NaN weights is saved and later called "the last good checkpoint"."""
    from textssr.train.stages import VAEStage
    loss, calls = VAEStage.loss, []

    def nan_backward(self, model, batch, generator):
        calls.append(1)
        value = loss(self, model, batch, generator)
        if len(calls) == 3:
            value.register_hook(lambda grad: grad * float("nan"))
        return value
    monkeypatch.setattr(VAEStage, "loss", nan_backward)
    out = tmp_path / "vae"
    with pytest.raises(RunStopped, match=r"the gradient norm is nan \(loss [0-9.]+\) at step 3.*checkpoint-2"):
        train(vae_cfg(corpus, out, max_train_steps=4, checkpointing_steps=1, max_grad_norm=None), "vae")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_pipeline_decodes_a_float16_force_upcast_vae_in_float32(tmp_path):
    from diffusers import AutoencoderKL
    from diffusers_textssr import TextSSRPipeline
    from tiny_models import save_tiny_sd21
    from textssr.models import load_scheduler, load_unet
    save_tiny_sd21(str(tmp_path))
    vae = AutoencoderKL.from_pretrained(str(tmp_path / "vae")).to(torch.float16)
    assert vae.config.force_upcast
    pipe = TextSSRPipeline(vae=vae, unet=load_unet(str(tmp_path / "unet")).to(torch.float16),
                           scheduler=load_scheduler(str(tmp_path / "scheduler"), "ddim"))
    seen = []
    decode = vae.decode
    vae.decode = lambda z, **kw: seen.append((z.dtype, vae.dtype)) or decode(z, **kw)
    side = pipe.unet.config.ttf_img_size
    ttf = torch.ones(1, pipe.unet.config.ttf_in_chans, side, side)
    image = torch.zeros(1, 3, 32, 32)
    pipe(ttf, image + 1, image, torch.ones(1, 1, 32, 32), num_inference_steps=1, output_type="pt",
         generator=torch.Generator().manual_seed(0), show_progress=False)
    assert seen == [(torch.float32, torch.float32)] and vae.dtype == torch.float16


# ----------------------------------------------------------------------------- option pairs refused at start-up


def error_line(main, capsys, *options):
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(REPO / "configs/tiny/train_vae_cfg.py"), "--cfg-options", *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    return err[0]


def test_8bit_adam_with_fused_adam_is_refused(corpus, tmp_path, capsys):
    import train_vae
    err = error_line(train_vae.main, capsys, f"lmdb_path={corpus / 'step1_lmdb'}", f"output_dir={tmp_path}",
                     "use_8bit_adam=True", "adam_fused=True")
    assert "use_8bit_adam=True with adam_fused=True" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_8bit_adam_without_a_gpu_is_refused(corpus, tmp_path, monkeypatch):
    import importlib.util
    from textssr.train.stages import VAEStage
    from textssr.train.validate import validate_config
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes"
                        else find_spec(name, *a))  # installed, say
    cfg = vae_cfg(corpus, tmp_path, use_8bit_adam=True, adam_fused=False)
    with pytest.raises(ConfigError, match="use_8bit_adam=True needs a GPU"):
        validate_config(cfg, VAEStage(), MixedPrecision("no", "the config"))


@pytest.mark.parametrize("options, mixed, message", [
    ({"use_8bit_adam": True, "adam_fused": False}, "no", "use_8bit_adam=True needs a GPU"),
    ({}, "fp16", "mixed_precision=fp16 needs a GPU"),
])
def test_gpu_only_options_follow_the_runs_device_not_the_machines(corpus, tmp_path, monkeypatch, options, mixed,
                                                                  message):
    """A GPU machine told to run on the CPU (ACCELERATE_USE_CPU, as `accelerate launch --cpu` sets): the run is on
    the CPU, so the GPU-only options are refused there, not let through because a GPU exists."""
    import importlib.util
    from textssr.train.stages import VAEStage
    from textssr.train.validate import validate_config
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes"
                        else find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    cfg = vae_cfg(corpus, tmp_path, **options)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, VAEStage(), MixedPrecision(mixed, "the config"))


def test_piecewise_constant_and_ema_resumes_without_ema_are_refused(corpus, tmp_path, capsys):
    import train_vae
    err = error_line(train_vae.main, capsys, f"lmdb_path={corpus / 'step1_lmdb'}", f"output_dir={tmp_path}",
                     "lr_scheduler=piecewise_constant")
    assert "piecewise_constant" in err
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5/trainer_state.json").write_text("{}")
    err = error_line(train_vae.main, capsys, f"lmdb_path={corpus / 'step1_lmdb'}", f"output_dir={tmp_path}",
                     "use_ema=True", "resume_from_checkpoint=latest")
    assert "use_ema=True but" in err and "vae_ema/ is missing" in err


# ----------------------------------------------------------------------------- memory and speed switches


def test_configure_backends_tf32_and_cudnn_autotuning():
    """TF32 set so that torch's legacy and new APIs agree: torch's compiler (and user code) reads the legacy ones,
    which raise ("mix of the legacy and new APIs") after only the new per-backend setting. A fresh interpreter: these
    switches are process-wide."""
    probe = (
        "import torch\n"
        "from textssr.runtime.precision import configure_backends\n"
        "configure_backends(torch.device('cpu'), allow_tf32=False)\n"
        "untouched = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)\n"
        "configure_backends(torch.device('cuda', 0), allow_tf32=True)\n"
        "print(untouched, torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,\n"
        "      torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.fp32_precision,\n"
        "      torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.benchmark)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["('highest',", "False)", "high", "True", "True", "tf32", "tf32", "True"]


def test_infer_honours_allow_tf32(tmp_path, monkeypatch):
    from tiny_models import save_tiny_sd21
    from textssr import generation
    from textssr.generation import pipeline
    seen = []
    monkeypatch.setattr(pipeline, "configure_backends", lambda device, allow, **kw: seen.append(allow))
    save_tiny_sd21(str(tmp_path / "m"))
    cfg = InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), dict(
        pretrained_vae=str(tmp_path / "m/vae"), pretrained_unet=str(tmp_path / "m/unet"), resolution=32,
        scheduler_path=str(tmp_path / "m/scheduler"), mixed_precision="no", allow_tf32=True))
    run = generation.resolve_run(cfg, True)
    generation.load_pipeline(run, cfg, torch.device("cpu"))
    assert seen == [True]


def test_ema_updates_with_foreach(corpus, tmp_path, monkeypatch):
    from diffusers.training_utils import EMAModel
    from textssr.train import loop
    made = []

    class Recording(EMAModel):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("foreach"))
            super().__init__(*args, **kwargs)
    monkeypatch.setattr(loop, "EMAModel", Recording)
    train(vae_cfg(corpus, tmp_path / "ema", max_train_steps=1, checkpointing_steps=1, use_ema=True), "vae")
    assert made == [True]


def test_latent_cache_lives_in_host_memory_and_batches_are_pinned_for_a_gpu(monkeypatch):
    from textssr.train.latent_cache import LatentCache
    from textssr.train.data import to_device
    batch = {"index": torch.tensor([3, 4]), "image": torch.zeros(2, 3, 8, 8), "masked_image": torch.zeros(2, 3, 8, 8),
             "glyph": torch.zeros(2, 3, 8, 8), "text": ["a", "b"]}
    moved = to_device(batch, torch.device("meta"))
    assert moved["index"].device.type == "cpu" and moved["image"].device.type == "meta"  # no sync to read keys
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self.shape) or self)
    cache = LatentCache()
    cache.pin = True
    latents = cache.latents(batch, lambda x: torch.ones(x.shape[0], 4, 2, 2))
    assert pinned == [torch.Size([2, 3, 4, 2, 2])] and all(v.device.type == "cpu" for v in cache.values())
    assert [z.shape for z in latents] == [torch.Size([2, 4, 2, 2])] * 3


def test_the_ttf_encoder_runs_once_per_generation(tmp_path):
    from diffusers_textssr import TextSSRPipeline
    from tiny_models import save_tiny_sd21
    from textssr.models import load_scheduler, load_unet, load_vae
    save_tiny_sd21(str(tmp_path))
    unet = load_unet(str(tmp_path / "unet"))
    pipe = TextSSRPipeline(vae=load_vae(str(tmp_path / "vae")), unet=unet,
                           scheduler=load_scheduler(str(tmp_path / "scheduler"), "ddim"))
    calls = []
    unet.ttf_net.register_forward_hook(lambda *a: calls.append(1))
    side = unet.config.ttf_img_size
    ttf = torch.rand(2, unet.config.ttf_in_chans, side, side)
    image = torch.zeros(2, 3, 32, 32)
    pipe(ttf, image + 1, image, torch.ones(2, 1, 32, 32), num_inference_steps=4, output_type="latent",
         generator=torch.Generator().manual_seed(0), show_progress=False)
    assert len(calls) == 1


# ----------------------------------------------------------------------------- latent cache: fixed rank shares


def test_latent_cache_ranks_keep_their_samples_every_epoch():
    from torch.utils.data import DistributedSampler
    from textssr.train.data import RankPartitionSampler
    data = list(range(23))
    shares = []
    for rank in range(3):
        sampler = RankPartitionSampler(data, num_replicas=3, rank=rank, shuffle=True, seed=7, drop_last=True)
        orders = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            orders.append(list(sampler))
        assert len({tuple(sorted(o)) for o in orders}) == 1  # the same samples every epoch ...
        assert len({tuple(o) for o in orders}) == 3  # ... in a new order
        assert len(orders[0]) == len(data) // 3
        shares.append(set(orders[0]))
    assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])
    # one process: DistributedSampler's very order (the tiny demo's runs are unchanged)
    for epoch in range(3):
        ours = RankPartitionSampler(data, num_replicas=1, rank=0, shuffle=True, seed=7, drop_last=True)
        theirs = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=7, drop_last=True)
        ours.set_epoch(epoch), theirs.set_epoch(epoch)
        assert list(ours) == list(theirs)


def test_the_cdm_loader_uses_fixed_shares_only_with_the_latent_cache(corpus):
    from types import SimpleNamespace
    from textssr.train.data import RankPartitionSampler, build_loader
    data = list(range(8))
    common = dict(seed=1, train_batch_size=2, dataloader_num_workers=0, dataloader_worker_nice=0)
    assert isinstance(build_loader(data, SimpleNamespace(latent_cache=True, **common), 2, 1).sampler,
                      RankPartitionSampler)
    assert not isinstance(build_loader(data, SimpleNamespace(latent_cache=False, **common), 2, 1).sampler,
                          RankPartitionSampler)


# ----------------------------------------------------------------------------- sampler noise on the device


def test_step_noise_generators_live_on_the_gpu_and_the_cpu_keeps_its_own():
    from textssr.data.seeding import item_torch_generator
    from textssr.generation.sampling import step_generators
    cpu = [item_torch_generator(3, i, stream=1) for i in range(3)]
    assert step_generators(cpu, torch.device("cpu")) is cpu  # the CPU's crops are unchanged

    asked = []

    def on(device):  # a CUDA generator, stood in for by a CPU one on this machine
        asked.append(device)
        return torch.Generator()

    gpu = torch.device("cuda", 3)
    first = step_generators([item_torch_generator(3, i, stream=1) for i in range(3)], gpu, factory=on)
    again = step_generators([item_torch_generator(3, i, stream=1) for i in range(3)], gpu, factory=on)
    assert asked == [gpu] * 6  # one generator per item, on the rank's own device
    seeds = [g.initial_seed() for g in first]
    assert seeds == [g.initial_seed() for g in again] and len(set(seeds)) == 3  # per item, reproducible
