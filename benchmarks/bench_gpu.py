"""GPU check of the full-size stages, ready before a GPU is: one command, one table (< 8 minutes on one modern GPU).

    python benchmarks/bench_gpu.py [--out results.json] [--tiny]
    python benchmarks/bench_gpu.py --estimate      # no GPU needed: parameter counts, FLOPs, saved activations

On a CUDA machine: SD 2.1's VAE and the 13-channel TextSSR UNet built from their architecture dicts (random
weights, nothing downloaded) at 256 px. For the CDM step (batch 4: VAE encode of image/masked_image/glyph, UNet
forward + backward, AdamW) and the VAE step (batch 8) under each of fp32, fp32 + TF32, bf16, fp16 and bf16 with
gradient checkpointing: ms per micro-batch, the VAE-encode share of the CDM step, peak GPU memory
(``max_memory_allocated``), whether the loss is finite and whether every trainable parameter got a gradient. Then
``train_diff.py`` for 8 steps at 256 px (fp16, EMA, gradient accumulation 2, a checkpoint at step 3, killed there
and resumed to 8; one checkpoint kept, scratch under ``TMPDIR``) and one ``infer.py`` batch on its checkpoint. The
steps are the project's own (``CDMStage.loss``, ``VAEStage.loss``, the scripts).

Without CUDA (or with ``--tiny``) the same code runs at tiny sizes in seconds; fp16 autocast is then timed on the
CPU, and the script runs train_diff.py in bf16 (fp16 needs a GPU). A CI test runs it so, so it cannot rot.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

MODES = {  # name: (autocast dtype or None, TF32, gradient checkpointing)
    "fp32": (None, False, False),
    "fp32+tf32": (None, True, False),
    "bf16": (torch.bfloat16, False, False),
    "fp16": (torch.float16, False, False),
    "bf16+ckpt": (torch.bfloat16, False, True),
}


def sizes(tiny: bool) -> dict:
    from tiny_models import TINY_UNET_ARCH, TINY_VAE_ARCH
    from textssr.models.arch import SD21_VAE_ARCH
    if tiny:
        return dict(resolution=32, vae_arch=dict(TINY_VAE_ARCH), unet_arch=dict(TINY_UNET_ARCH, sample_size=4),
                    cdm_batch=2, vae_batch=2, timed=1, steps=2, label="tiny models, 32 px")
    return dict(resolution=256, vae_arch=dict(SD21_VAE_ARCH), unet_arch=dict(in_channels=13), cdm_batch=4,
                vae_batch=8, timed=5, steps=20, label="SD 2.1 VAE + 13-channel UNet (random weights), 256 px")


def synthetic_batch(batch: int, resolution: int, ttf_chans: int, ttf_size: int, device) -> dict:
    """A training batch of the sample-dict shapes and ranges (textssr.data)."""
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(batch, 1, resolution, resolution)
    mask[:, :, resolution // 4: resolution // 2, resolution // 8: -resolution // 8] = 0  # the text area
    image = torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1
    out = dict(image=image, mask=mask, masked_image=image * mask,
               glyph=torch.rand(batch, 3, resolution, resolution, generator=g),
               ttf_img=torch.rand(batch, ttf_chans, ttf_size, ttf_size, generator=g))
    return {k: v.to(device) for k, v in out.items()}


class Clock:
    """Wall time of named phases, the device synchronised first (what the stages' ``lap`` hook calls)."""

    def __init__(self, device):
        self.device, self.t, self.spent = device, time.perf_counter(), {}

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, name: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.spent[name] = self.spent.get(name, 0.0) + now - self.t
        self.t = now


def measure(stage, model, batch: dict, mode: str, device, timed: int) -> dict:
    """``timed`` training micro-batches (after one warm-up) of ``stage`` under ``mode``."""
    dtype, tf32, checkpointing = MODES[mode]
    from textssr.runtime.precision import configure_backends
    matmul, conv = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = "ieee"
    configure_backends(device, tf32)
    if checkpointing:
        model.enable_gradient_checkpointing()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    clock, reached, finite = Clock(device), True, True
    stage.lap = clock
    total = 0.0
    for i in range(timed + 1):
        clock("idle")
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = stage.loss(model, batch, generator)
        scaler.scale(loss).backward()
        finite &= bool(torch.isfinite(loss.detach()).item())
        reached &= all(p.grad is not None for p in trainable)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        clock("backward")
        if i == 0:  # warm-up: cuDNN autotuning, allocator
            clock.spent.clear()
    total = sum(v for k, v in clock.spent.items() if k != "idle")
    if checkpointing:
        model.disable_gradient_checkpointing()
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = matmul, conv
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    encode = clock.spent.get("vae_encode")
    return dict(mode=mode, ms=round(1000 * total / timed, 1),
                vae_encode_share=round(encode / total, 3) if encode is not None else None,
                peak_gib=round(peak, 2) if peak is not None else None, finite=finite, all_grads=reached)


def model_steps(size: dict, device) -> list:
    from diffusers import AutoencoderKL, DDPMScheduler
    from mmengine.config import ConfigDict
    from diffusers_textssr import TextSSRUNet2DConditionModel
    from textssr.models.arch import SD21_SCHEDULER_CONFIG
    from textssr.train.stages import CDMStage, VAEStage
    rows = []
    torch.manual_seed(0)
    unet = TextSSRUNet2DConditionModel(**size["unet_arch"]).to(device).train()
    cdm = CDMStage()
    cdm.cfg = ConfigDict(snr_gamma=None, text_loss_weight=1.0, vae_latents="sample")
    cdm.noise_scheduler = DDPMScheduler.from_config(SD21_SCHEDULER_CONFIG)
    cdm.vae = AutoencoderKL(**size["vae_arch"]).to(device).requires_grad_(False).eval()
    batch = synthetic_batch(size["cdm_batch"], size["resolution"], unet.config.ttf_in_chans,
                            unet.config.ttf_img_size, device)
    for mode, (dtype, _, _) in MODES.items():
        cdm.vae.to(dtype=dtype or torch.float32)  # the frozen VAE in the mixed-precision dtype, as the original
        cdm.latents_checked = True  # the bench reports finiteness itself
        rows.append(dict(model=f"CDM (batch {size['cdm_batch']})", **measure(cdm, unet, batch, mode, device,
                                                                              size["timed"])))
    del unet, cdm
    vae = AutoencoderKL(**size["vae_arch"]).to(device).train()
    stage = VAEStage()
    stage.cfg = ConfigDict(scaling_factor=None)
    batch = synthetic_batch(size["vae_batch"], size["resolution"], 1, 1, device)
    for mode in MODES:
        rows.append(dict(model=f"VAE (batch {size['vae_batch']})", **measure(stage, vae, batch, mode, device,
                                                                              size["timed"])))
    return rows


def script_runs(size: dict, cuda: bool, root: str) -> dict:
    """train_diff.py: 3 steps with a checkpoint, then the same command resumed to 8; infer.py on its checkpoint."""
    from diffusers import AutoencoderKL
    from textssr.data.tiny_data import generate
    generate(os.path.join(root, "data"), num_images=6, bench_images=1, seed=3)
    vae_dir = os.path.join(root, "vae")
    torch.manual_seed(0)
    AutoencoderKL(**size["vae_arch"]).save_pretrained(vae_dir)
    precision = "fp16" if cuda else "bf16"
    config = os.path.join(root, "train_cfg.py")
    with open(config, "w") as f:
        f.write(f"_base_ = [{os.path.join(REPO, 'configs/train_diff_step1_cfg.py')!r}]\n"
                f"lmdb_path = {os.path.join(root, 'data/AnyWord-lmdb/step1_lmdb')!r}\n"
                f"output_dir = {os.path.join(root, 'step1')!r}\n"
                f"pretrained_model_name_or_path = None\npretrained_vae = {vae_dir!r}\n"
                f"unet_arch = dict(_delete_=True, **{size['unet_arch']!r})\n"
                f"resolution = {size['resolution']}\ntrain_batch_size = 2\ngradient_accumulation_steps = 2\n"
                f"mixed_precision = {precision!r}\nuse_ema = True\ncheckpointing_steps = 3\n"
                "checkpoints_total_limit = 1\n"  # the shipped None keeps every ~15 GB full-size checkpoint
                "dataloader_num_workers = 0\nreport_to = None\nlogging_steps = 1\nlearning_rate = 1e-5\n")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--dynamo_backend", "no", "--mixed_precision", "no"] + ([] if cuda else ["--cpu"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = {}
    for steps in (3, 8):
        started = time.perf_counter()
        run = subprocess.run(launch + ["train_diff.py", "--config", config, "--cfg-options",
                                       f"max_train_steps={steps}"], cwd=REPO, env=env, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"train_diff.py to step {steps} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
        state = json.load(open(os.path.join(root, "step1", f"checkpoint-{steps}", "trainer_state.json")))
        out[f"train_to_{steps}"] = dict(seconds=round(time.perf_counter() - started, 1), step=state["global_step"])
    starts = [json.loads(line) for line in open(os.path.join(root, "step1", "train_log.jsonl"))]
    starts = [r for r in starts if r["event"] == "start"]
    out["train_resumed_from_3"] = len(starts) == 2 and str(starts[1]["resumed_from"]).endswith("checkpoint-3")
    out["ema_saved"] = os.path.isdir(os.path.join(root, "step1", "checkpoint-8", "unet_ema"))
    out["checkpoints_kept"] = sorted(n for n in os.listdir(os.path.join(root, "step1")) if n.startswith("checkpoint-"))
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "infer.py", "--config", os.path.join(REPO, "configs/infer_cfg.py"),
                          "--cfg-options", f"bench={os.path.join(root, 'data/bench/test.json')}",
                          f"output_dir={os.path.join(root, 'infer')}", f"pretrained_vae={vae_dir}",
                          f"pretrained_unet={os.path.join(root, 'step1')}", "scheduler_path=None",
                          f"num_inference_steps={size['steps']}", "batch_size=4", f"mixed_precision={precision}",
                          "resolution=None", "ttf_size=None", "max_len=None"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"infer.py failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
    meta = json.load(open(os.path.join(root, "infer", "meta.json")))
    out["infer"] = dict(seconds=round(time.perf_counter() - started, 1), crops=meta["counts"]["written"],
                        dtype=meta["dtype"])
    return out


def estimate() -> None:
    """What the full-size models need per sample at 256 px, computed on the meta device (nothing allocated):
    parameters, forward FLOPs (torch.utils.flop_counter) and the bytes autograd saves for backward (each tensor
    once; math attention, so flash attention saves less)."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode
    from diffusers_textssr import TextSSRUNet2DConditionModel
    from textssr.models.arch import SD21_VAE_ARCH

    def saved_gb(fn) -> float:
        seen, total = set(), [0]

        def pack(t):
            base = t._base if t._base is not None else t
            if id(base) not in seen:
                seen.add(id(base))
                total[0] += base.numel() * base.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return total[0] / 1e9

    def tflop(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e12

    with torch.device("meta"):
        unet, vae = TextSSRUNet2DConditionModel(), AutoencoderKL(**SD21_VAE_ARCH)
        x, ttf = torch.randn(1, 13, 32, 32), torch.rand(1, 25, 64, 64)
        t, image = torch.zeros(1, dtype=torch.long), torch.randn(1, 3, 256, 256)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"UNet {count(unet):.0f} M parameters (TTF encoder {count(unet.ttf_net):.0f} M), VAE {count(vae):.0f} M")
    with torch.no_grad():
        encode = tflop(lambda: vae.encode(torch.cat([image] * 3)))
    print(f"per sample at 256 px: UNet forward {tflop(lambda: unet(x, t, encoder_hidden_states=ttf)):.3f} TFLOP, "
          f"VAE encode of image + masked image + glyph {encode:.3f} TFLOP, VAE forward {tflop(lambda: vae(image)):.3f} "
          "TFLOP (backward ~2x forward)")
    fp32 = saved_gb(lambda: unet(x, t, encoder_hidden_states=ttf))
    half = unet.to(torch.bfloat16)
    bf16 = saved_gb(lambda: half(x.bfloat16(), t, encoder_hidden_states=ttf.bfloat16()))
    half.enable_gradient_checkpointing()
    ckpt = saved_gb(lambda: half(x.bfloat16(), t, encoder_hidden_states=ttf.bfloat16()))
    print(f"saved activations per sample: UNet fp32 {fp32:.2f} GB, bf16 {bf16:.2f} GB, bf16 + checkpointing "
          f"{ckpt:.2f} GB; VAE fp32 {saved_gb(lambda: vae(image)):.2f} GB")


def table(rows: list) -> str:
    lines = ["| model | precision | ms / micro-batch | VAE encode share | peak GPU memory | loss finite | every "
             "parameter has a gradient |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        share = f"{100 * r['vae_encode_share']:.0f} %" if r["vae_encode_share"] is not None else "-"
        peak = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['ms']:.1f} | {share} | {peak} | "
                     f"{'yes' if r['finite'] else 'NO'} | {'yes' if r['all_grads'] else 'NO'} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument("--tiny", action="store_true", help="tiny models even on a GPU (what the CI test runs)")
    parser.add_argument("--estimate", action="store_true", help="only the full-size models' parameters, FLOPs and "
                        "activation bytes, computed on the meta device (seconds, no GPU)")
    args = parser.parse_args()
    if args.estimate:
        return estimate()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    size = sizes(args.tiny or not cuda)
    machine = torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    print(f"{size['label']} on {machine}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    started = time.perf_counter()
    rows = model_steps(size, device)
    print(table(rows), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_gpu-") as root:  # under TMPDIR (tempfile's rule), removed after
        runs = script_runs(size, cuda, root)
        runs["scratch"] = root
    print(f"train_diff.py ({'fp16' if cuda else 'bf16'}, EMA, accumulation 2): steps 1-3 in "
          f"{runs['train_to_3']['seconds']} s, resumed from checkpoint-3 to step {runs['train_to_8']['step']} in "
          f"{runs['train_to_8']['seconds']} s (resumed: {runs['train_resumed_from_3']}, EMA saved: "
          f"{runs['ema_saved']})")
    print(f"infer.py: {runs['infer']['crops']} crops in {runs['infer']['seconds']} s ({runs['infer']['dtype']})")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=machine, torch=torch.__version__, cuda=torch.version.cuda, sizes=size["label"],
                           steps=rows, scripts=runs), f, indent=2)


if __name__ == "__main__":
    main()
