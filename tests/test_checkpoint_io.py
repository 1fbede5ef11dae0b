"""How checkpoints are written and read: atomically (a half-written checkpoint is never picked, by resume nor by
infer/synthesize's model lookup), the EMA as plain safetensors + config (no model built to save it; folders written
by diffusers' EMAModel.save_pretrained still load), weights read into the model in place (no second copy in
memory), and the frozen VAE cast without diffusers' float32 warning."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel
from diffusers_textssr import TextSSRUNet2DConditionModel
from safetensors.torch import load_file, save_file

from tiny_models import TINY_UNET_ARCH, TINY_VAE_ARCH
from textssr.models import cast_model, resolve_model_dir
from textssr.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return TextSSRUNet2DConditionModel(**TINY_UNET_ARCH)


def trained_ema(model):
    """An EMA of ``model`` that has taken two steps towards other weights (shadow != model, counters moved)."""
    ema = EMAModel(model.parameters(), decay=0.9, model_cls=type(model), model_config=model.config, foreach=True)
    with torch.no_grad():
        for _ in range(2):
            for p in model.parameters():
                p.add_(0.01)
            ema.step(model.parameters())
    return ema


# ---------------------------------------------------------------------------------------------- atomic checkpoints


def test_a_checkpoint_killed_mid_save_is_never_picked(tmp_path):
    """A save that dies after the model was written (here: a stage file that fails) leaves no checkpoint-2 that
    infer.py/synthesize.py (resolve_model_dir → checkpoint-N/unet) or resume ("latest") would pick."""
    from accelerate import Accelerator
    from textssr.train.settings import CDMSettings
    cfg = CDMSettings.load(str(REPO / "configs/tiny/train_diff_step1_cfg.py"), dict(output_dir=str(tmp_path)))
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(tiny_unet())
    ckpt.register_model_hooks(accelerator, "unet")
    generator = torch.Generator().manual_seed(0)
    ckpt.save_checkpoint(accelerator, str(tmp_path), 1, cfg, {"global_step": 1}, generator)

    def dies(folder):  # called after the accelerate state (the unet/ folder) is written, before the rename
        assert os.path.isfile(os.path.join(folder, "unet", "config.json"))
        raise KeyboardInterrupt("killed mid-save")
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(accelerator, str(tmp_path), 2, cfg, {"global_step": 2}, generator, extra=dies)
    assert resolve_model_dir(str(tmp_path), "unet") == str(tmp_path / "checkpoint-1" / "unet")
    assert ckpt.latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-1")
    ckpt.remove_partial(str(tmp_path))  # what the next run does first
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]
    del model


# ---------------------------------------------------------------------------------------------- EMA


def test_ema_is_saved_without_building_a_model_and_reads_back_everywhere(tmp_path):
    model = tiny_unet()
    ema = trained_ema(model)
    ema.model_cls = ema.model_config = None  # EMAModel.save_pretrained cannot work without them: nothing is built
    ckpt.save_ema(ema, model, str(tmp_path / "new"))
    ema.model_cls, ema.model_config = type(model), model.config
    ema.save_pretrained(str(tmp_path / "old"))  # diffusers' way: a random model, the shadow copied in, saved
    new, old = (load_file(str(tmp_path / f / "diffusion_pytorch_model.safetensors")) for f in ("new", "old"))
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)
    configs = [json.loads((tmp_path / f / "config.json").read_text()) for f in ("new", "old")]
    assert {k: v for k, v in configs[0].items() if k != "_diffusers_version"} == \
        {k: v for k, v in configs[1].items() if k != "_diffusers_version"}
    assert configs[0]["optimization_step"] == 2
    # what infer.py loads (pretrained_unet=checkpoint-N/unet_ema) and what diffusers' EMAModel reads
    loaded = TextSSRUNet2DConditionModel.from_pretrained(str(tmp_path / "new"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), ema.shadow_params))
    again = EMAModel.from_pretrained(str(tmp_path / "new"), model_cls=TextSSRUNet2DConditionModel)
    assert again.optimization_step == 2 and all(torch.equal(a, b) for a, b in zip(again.shadow_params,
                                                                                   ema.shadow_params))


@pytest.mark.parametrize("writer", ["save_ema", "EMAModel.save_pretrained"])
def test_ema_loads_in_place_from_new_and_old_folders(tmp_path, writer):
    model = tiny_unet()
    ema = trained_ema(model)
    if writer == "save_ema":
        ckpt.save_ema(ema, model, str(tmp_path))
    else:  # checkpoints written before the EMA was saved directly
        ema.save_pretrained(str(tmp_path))
    fresh = tiny_unet(seed=1)
    target = EMAModel(fresh.parameters(), decay=0.5, model_cls=type(fresh), model_config=fresh.config)
    storage = [p.data_ptr() for p in target.shadow_params]
    ckpt.load_ema(target, fresh, str(tmp_path))
    assert [p.data_ptr() for p in target.shadow_params] == storage  # filled in place, not replaced by copies
    assert all(torch.equal(a, b) for a, b in zip(target.shadow_params, ema.shadow_params))
    assert (target.optimization_step, target.decay) == (2, 0.9)


# ---------------------------------------------------------------------------------------------- reading in place


def test_read_into_fills_the_model_in_place_and_refuses_a_model_of_another_shape(tmp_path):
    model = tiny_unet()
    model.save_pretrained(str(tmp_path / "unet"))
    other = tiny_unet(seed=1)
    storage = {k: v.data_ptr() for k, v in other.state_dict().items()}
    ckpt.read_into(str(tmp_path / "unet"), other.state_dict())
    assert {k: v.data_ptr() for k, v in other.state_dict().items()} == storage
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    bf16 = {k: torch.empty_like(v, dtype=torch.bfloat16) for k, v in model.state_dict().items()}  # cast on the way
    ckpt.read_into(str(tmp_path / "unet"), bf16)
    assert all(torch.equal(bf16[k], v.bfloat16()) for k, v in model.state_dict().items())
    wrong = dict(other.state_dict(), **{"conv_in.weight": torch.empty(1, 2, 3, 3)})
    with pytest.raises(ValueError, match="conv_in.weight has shape"):
        ckpt.read_into(str(tmp_path / "unet"), wrong)
    with pytest.raises(ValueError, match="missing .*extra"):
        ckpt.read_into(str(tmp_path / "unet"), dict(other.state_dict(), extra=torch.empty(1)))


PEAK_PROBE = """
import sys, torch
from textssr.train.checkpoint import read_into
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) * 1024
targets = {f"w{i}": torch.ones(1024, 1024) for i in range(%d)}
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the present
before = status("VmRSS")
read_into(sys.argv[1], targets)
assert all(bool((t == i).all()) for i, t in enumerate(targets.values()))
print(status("VmHWM") - before)
"""


def test_reading_weights_holds_no_second_copy(tmp_path):
    """The peak memory of reading 200 MB of weights into a model stays far below their size (safetensors'
    load_file + load_state_dict: +200 MB; a memory map counts the file's pages too)."""
    count = 50
    save_file({f"w{i}": torch.full((1024, 1024), float(i)) for i in range(count)}, str(tmp_path / "w.safetensors"))
    run = subprocess.run([sys.executable, "-c", PEAK_PROBE % count, str(tmp_path)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-2000:]
    size = count * 1024 * 1024 * 4
    assert int(run.stdout.split()[-1]) < size / 4


# ---------------------------------------------------------------------------------------------- the frozen VAE


def test_cast_model_casts_without_the_float32_warning():
    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_VAE_ARCH)
    reference = {k: v.to(torch.bfloat16) for k, v in vae.state_dict().items()}
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        assert cast_model(vae, torch.bfloat16, torch.device("cpu")) is vae
    finally:
        logger.removeHandler(handler)
    assert not [r for r in records if "kept in float32" in r.getMessage()]
    assert vae.dtype == torch.bfloat16 and all(torch.equal(v, reference[k]) for k, v in vae.state_dict().items())


def test_cast_model_keeps_the_modules_a_class_keeps_in_float32(monkeypatch):
    monkeypatch.setattr(AutoencoderKL, "_keep_in_fp32_modules", ["quant_conv"])
    vae = cast_model(AutoencoderKL(**TINY_VAE_ARCH), torch.float16)
    assert vae.quant_conv.weight.dtype == torch.float32 and vae.post_quant_conv.weight.dtype == torch.float16
    assert vae.encoder.conv_in.weight.dtype == torch.float16


FORK_PROBE = """
import os, sys, time, torch
from accelerate import Accelerator
from diffusers import AutoencoderKL
sys.path.insert(0, sys.argv[2])
from tiny_models import TINY_VAE_ARCH
from textssr.train import checkpoint as ckpt
def private(pid):  # bytes only this process maps
    fields = dict(l.split()[:2] for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Private_"))
    return sum(int(v) for v in fields.values()) * 1024
accelerator = Accelerator(cpu=True)
model = AutoencoderKL(**dict(TINY_VAE_ARCH, block_out_channels=(64, 128, 256, 256)))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
model, optimizer = accelerator.prepare(model, optimizer)
ckpt.register_model_hooks(accelerator, "vae")
ckpt.load_checkpoint(accelerator, sys.argv[1], torch.Generator())
for p in model.parameters():
    p.grad = torch.ones_like(p)
read, write = os.pipe()
child = os.fork()  # what a DataLoader worker is
if child == 0:
    os.read(read, 1)
    os._exit(0)
time.sleep(0.5)
before = private(child)
optimizer.step()  # writes every weight and every state tensor
after = private(child)
os.write(write, b"x")
os.waitpid(child, 0)
print(after - before)
"""


def test_a_worker_forked_after_a_resume_holds_no_copy_of_the_optimizer_state(tmp_path):
    """After a resume the first step writes the weights and the whole AdamW state. A process forked before it (a
    DataLoader worker) keeps the pages the step copied on write: the weights' (as in a fresh run), and not the
    optimizer state's, which stays in the checkpoint file's pages until written (memory-mapped load)."""
    from accelerate import Accelerator
    from textssr.train.settings import TrainSettings
    cfg = TrainSettings.load(str(REPO / "configs/tiny/train_vae_cfg.py"), dict(output_dir=str(tmp_path)))
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = AutoencoderKL(**dict(TINY_VAE_ARCH, block_out_channels=(64, 128, 256, 256)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    ckpt.register_model_hooks(accelerator, "vae")
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    path = ckpt.save_checkpoint(accelerator, str(tmp_path), 1, cfg, {"global_step": 1}, torch.Generator())
    weights = sum(p.numel() * 4 for p in model.parameters())  # the optimizer state is twice this
    run = subprocess.run([sys.executable, "-c", FORK_PROBE, path, str(REPO / "tests")], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-2000:]
    copied = int(run.stdout.split()[-1])
    assert copied < weights * 2  # fully read state: weights + 2 × weights copied for the worker
