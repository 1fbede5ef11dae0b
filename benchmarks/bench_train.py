"""Training speed on this machine: optimizer steps/s and peak RSS of each tiny stage (configs/tiny/), and with
``--sd21-unet`` the step time of the paper-size UNet on the CPU, so that full-scale runs can be extrapolated.

    python benchmarks/bench_train.py [--steps 20] [--num-images 40] [--sd21-unet]

Each stage runs in its own process (peak RSS is per process) on a tiny corpus generated in a temporary folder,
with the tiny configs as they are except output paths, step count and logging. Steps/s is measured between the
first and the last optimizer step (start-up and the first step's warm-up excluded).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = (("vae", "train_vae_cfg.py"), ("cdm", "train_diff_step1_cfg.py"), ("cdm", "train_diff_step2_cfg.py"))


def run_stage(stage: str, config: str, options: dict) -> dict:
    """Child process: train one tiny stage and print its figures as one JSON line."""
    sys.path.insert(0, REPO)
    from textssr.config import load_config
    from textssr.train import train
    from textssr.train.loop import LOG_FILE
    cfg = load_config(os.path.join(REPO, "configs", "tiny", config), options)
    train(cfg, stage)
    steps = [json.loads(line) for line in open(os.path.join(cfg.output_dir, LOG_FILE))]
    steps = [r for r in steps if r["event"] == "step"]
    seconds = steps[-1]["time"] - steps[0]["time"]
    return {"config": config, "resolution": cfg.resolution, "batch": cfg.train_batch_size,
            "steps_per_s": round((len(steps) - 1) / seconds, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def bench_sd21_unet(batch: int, resolution: int) -> dict:
    """One training step (forward, backward, AdamW) of the paper's UNet (random weights) at ``resolution``."""
    import torch
    from diffusers_textssr import TextSSRUNet2DConditionModel
    torch.manual_seed(0)
    unet = TextSSRUNet2DConditionModel()  # SD 2.1's UNet, 13 input channels, the paper's TTF encoder
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, foreach=False)  # lower peak memory
    latent = resolution // 8
    sample = torch.randn(batch, 13, latent, latent)
    ttf = torch.rand(batch, 25, 64, 64)
    timesteps = torch.randint(0, 1000, (batch,))
    times = []
    for _ in range(2):
        start = time.time()
        loss = unet(sample, timesteps, encoder_hidden_states=ttf).sample.float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.time() - start)
    return {"params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1), "batch": batch,
            "resolution": resolution, "first_step_s": round(times[0], 2), "step_s": round(times[-1], 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per stage")
    parser.add_argument("--num-images", type=int, default=40, help="images of the tiny corpus")
    parser.add_argument("--sd21-unet", action="store_true",
                        help="also time one step of the SD-2.1-size UNet (about 14 GB of RAM with AdamW; slow)")
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "CONFIG", "OPTIONS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_stage(args.child[0], args.child[1], json.loads(args.child[2]))))
        return

    sys.path.insert(0, REPO)
    from textssr.tiny_data import generate
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        generate(data, num_images=args.num_images, bench_images=2, progress=False)
        lmdb = os.path.join(data, "AnyWord-lmdb")
        outputs = {"vae": os.path.join(tmp, "vae_ft"), "step1": os.path.join(tmp, "step1")}
        common = dict(max_train_steps=args.steps, checkpointing_steps=args.steps, logging_steps=1, report_to=None,
                      resume_from_checkpoint=None)
        per_stage = [
            dict(common, output_dir=outputs["vae"], lmdb_path=[f"{lmdb}/step1_lmdb", f"{lmdb}/step2_lmdb"]),
            dict(common, output_dir=outputs["step1"], lmdb_path=f"{lmdb}/step1_lmdb", pretrained_vae=outputs["vae"]),
            dict(common, output_dir=os.path.join(tmp, "step2"), lmdb_path=f"{lmdb}/step2_lmdb",
                 pretrained_vae=outputs["vae"], pretrained_unet=outputs["step1"]),
        ]
        print(f"{'config':28s} {'res':>4s} {'batch':>5s} {'steps/s':>8s} {'peak RSS MB':>12s}")
        for (stage, config), options in zip(STAGES, per_stage):
            proc = subprocess.run([sys.executable, __file__, "--child", stage, config, json.dumps(options)],
                                  capture_output=True, text=True, cwd=REPO)
            if proc.returncode:
                sys.exit(f"{config} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{r['config']:28s} {r['resolution']:4d} {r['batch']:5d} {r['steps_per_s']:8.3f} "
                  f"{r['peak_rss_mb']:12d}")
    if args.sd21_unet:
        r = bench_sd21_unet(batch=1, resolution=256)
        print(f"SD-2.1-size UNet ({r['params_m']} M params), CPU, batch {r['batch']} at {r['resolution']} px: "
              f"{r['step_s']} s/step (first {r['first_step_s']} s), peak RSS {r['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
