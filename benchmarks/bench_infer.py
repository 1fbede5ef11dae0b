"""Inference speed and peak memory of TextSSRPipeline, per scheduler: the tiny config, and (with --sd21) the
paper's architecture — SD 2.1's VAE and UNet (~865 M parameters) with random weights.

    python benchmarks/bench_infer.py                       # tiny, 64 px, CPU, batch 1, 2 steps: seconds
    python benchmarks/bench_infer.py --sd21 --repeats 1    # + SD 2.1 at 256 px: minutes on a laptop CPU
    python benchmarks/bench_infer.py --sd21 --device cuda --dtype fp16 --batch 32 --steps 20

crops/s counts generated regions (batch × calls / seconds), after one warm-up call per scheduler. Peak memory is
the process's peak resident set on the CPU (reset before each measurement where Linux allows it) and the peak
allocated GPU memory on CUDA.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch
from diffusers import AutoencoderKL

from diffusers_textssr import TextSSRPipeline, TextSSRUNet2DConditionModel
from textssr.models import SCHEDULERS, SD21_VAE_ARCH, load_scheduler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from tiny_models import TINY_UNET_ARCH, TINY_VAE_ARCH  # noqa: E402 (the tests' tiny models)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CONFIGS = {  # name: (VAE arch, UNet arch, region size R)
    "tiny": (TINY_VAE_ARCH, TINY_UNET_ARCH, 64),
    "sd21": (SD21_VAE_ARCH, {}, 256),  # TextSSRUNet2DConditionModel() is SD 2.1's UNet with 13 channels
}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the peak resident set size (VmHWM) of this process
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # the figure is then the peak since the process started


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_pipeline(config: str, device: torch.device, dtype: torch.dtype) -> TextSSRPipeline:
    vae_arch, unet_arch, _ = CONFIGS[config]
    torch.manual_seed(0)
    vae, unet = AutoencoderKL(**vae_arch), TextSSRUNet2DConditionModel(**unet_arch)
    if dtype != torch.float32:  # (diffusers warns on any dtype cast, even a no-op)
        vae, unet = vae.to(dtype), unet.to(dtype)
    return TextSSRPipeline(vae=vae.to(device).eval(), unet=unet.to(device).eval(),
                           scheduler=load_scheduler(None, "ddpm"))


def random_batch(batch: int, resolution: int, ttf_shape, device: torch.device):
    """Inputs with the data layer's shapes and ranges: a text box in the middle of each region."""
    g = torch.Generator().manual_seed(0)
    masks = torch.ones(batch, 1, resolution, resolution)
    masks[:, :, resolution // 3: 2 * resolution // 3, resolution // 8: 7 * resolution // 8] = 0.0
    masked = (torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1) * masks
    glyph = torch.where(masks > 0, 1.0, 127 / 255).expand(batch, 3, resolution, resolution).contiguous()
    ttf = torch.rand((batch,) + ttf_shape, generator=g)
    return [x.to(device) for x in (ttf, glyph, masked, masks)]


def bench(config: str, args, device: torch.device) -> None:
    started = time.perf_counter()
    pipe = build_pipeline(config, device, DTYPES[args.dtype])
    unet_cfg = pipe.unet.config
    resolution = CONFIGS[config][2]
    inputs = random_batch(args.batch, resolution, (unet_cfg.ttf_in_chans, unet_cfg.ttf_img_size,
                                                   unet_cfg.ttf_img_size), device)
    params = sum(p.numel() for m in (pipe.vae, pipe.unet) for p in m.parameters()) / 1e6
    print(f"\n{config}: {resolution} px, VAE + UNet {params:.1f} M parameters, built in "
          f"{time.perf_counter() - started:.1f} s; batch {args.batch}, {args.steps} steps, {args.dtype} on {device}")
    print(f"{'scheduler':<10} {'crops/s':>9} {'s/call':>8} {'peak MiB':>9}")
    for name in args.schedulers:
        pipe.scheduler = load_scheduler(None, name)
        generator = torch.Generator().manual_seed(0)
        call = dict(num_inference_steps=args.steps, generator=generator, output_type="np", show_progress=False)
        pipe(*inputs, **call)  # warm-up
        reset_peak(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            pipe(*inputs, **call)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - t0) / args.repeats
        print(f"{name:<10} {args.batch / seconds:>9.3g} {seconds:>8.3f} {peak_mib(device):>9.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sd21", action="store_true", help="also measure SD 2.1's architecture (slow on a CPU)")
    parser.add_argument("--only-sd21", action="store_true", help="measure SD 2.1's architecture alone")
    parser.add_argument("--schedulers", nargs="+", default=sorted(SCHEDULERS), choices=sorted(SCHEDULERS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per scheduler, after one warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    configs = ["sd21"] if args.only_sd21 else ["tiny"] + (["sd21"] if args.sd21 else [])
    for config in configs:
        bench(config, args, device)


if __name__ == "__main__":
    main()
