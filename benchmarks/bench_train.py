"""Training speed on this machine: optimizer steps/s and peak RSS of each tiny stage (configs/tiny/), and with
``--sd21-unet`` the step time of the paper-size UNet on the CPU, so that full-scale runs can be extrapolated.

    python benchmarks/bench_train.py [--steps 240] [--num-images 200] [--sd21-unet]
    python benchmarks/bench_train.py --profile [--repeats 2]

Each stage runs in its own process (peak RSS is per process) on a tiny corpus generated in a temporary folder,
with the tiny configs as they are except output paths, step count and logging. Steps/s is measured between the
first and the last optimizer step (start-up and the first step's warm-up excluded).

``--profile`` splits each stage's optimizer step into data wait, VAE encode, forward, backward, optimizer, logging
and checkpoint (``profile=True`` in the training loop; the first 2 steps are left out), and times each stage also
with the earlier default settings (``MAIN_OPTIONS``: the frozen VAE always in bf16, a float32 UNet with 8
attention heads, no latent cache, the default AdamW, a loader worker at normal priority), alternating the two
``--repeats`` times in one run, so the speed-up does not depend on how busy or fast the machine is that day. The
precision each run chose (``"auto"``) is printed beside it. Use a corpus and step count that cover several epochs,
as the demo's 1,800 CDM steps cover 13 epochs of its 1,131 words: the latent cache pays from the second epoch on
(defaults: 200 images ≈ 470 words, 240 steps ≈ 4 epochs).
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
# configs/tiny as they were at e51d6d7, as overrides of today's tiny configs.
MAIN_CDM = {"vae_dtype": "bf16", "mixed_precision": "no", "unet_arch.attention_head_dim": 8, "adam_fused": False,
            "latent_cache": False, "region_placement": "random", "dataloader_worker_nice": 0}
MAIN_OPTIONS = {"train_vae_cfg.py": {"mixed_precision": "no", "adam_fused": False, "dataloader_worker_nice": 0},
                "train_diff_step1_cfg.py": MAIN_CDM, "train_diff_step2_cfg.py": MAIN_CDM}
SETTINGS = {"shipped": {config: {} for _, config in STAGES}, "main e51d6d7": MAIN_OPTIONS}
PHASES = ("data", "vae_encode", "forward", "backward", "optimizer", "logging", "checkpoint", "step")


def run_stage(stage: str, config: str, options: dict) -> dict:
    """Child process: train one tiny stage and print its figures as one JSON line."""
    sys.path.insert(0, REPO)
    from textssr.train.settings import STAGE_SETTINGS
    from textssr.train import train
    from textssr.train.loop import LOG_FILE
    cfg = STAGE_SETTINGS[stage].load(os.path.join(REPO, "configs", "tiny", config), options)
    state = train(cfg, stage)
    profile = state.get("profile_ms", {})
    if profile:
        steps_per_s = 1000.0 / profile["step"]
    else:
        steps = [json.loads(line) for line in open(os.path.join(cfg.output_dir, LOG_FILE))]
        steps = [r for r in steps if r["event"] == "step"]
        steps_per_s = (len(steps) - 1) / (steps[-1]["time"] - steps[0]["time"])
    return {"config": config, "resolution": cfg.resolution, "batch": cfg.train_batch_size,
            "steps_per_s": round(steps_per_s, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "profile_ms": profile,
            "precision": {k: v["dtype"] for k, v in state.get("precision", {}).items()}}


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


def child(stage: str, config: str, options: dict) -> dict:
    """Train one stage in a fresh process; its figures."""
    proc = subprocess.run([sys.executable, __file__, "--child", stage, config, json.dumps(options)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        sys.exit(f"{config} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile_stage(stage: str, config: str, options: dict, repeats: int) -> None:
    """Each setting's run (``options[name]``) alternated ``repeats`` times; per-phase ms (median over runs) and the
    ratio of the median step times."""
    import shutil
    import statistics
    runs = {name: [] for name in options}
    for _ in range(repeats):
        for name, opts in options.items():
            shutil.rmtree(opts["output_dir"], ignore_errors=True)
            runs[name].append(child(stage, config, opts))
    print(f"\n{config} (batch {runs['shipped'][0]['batch']}, {runs['shipped'][0]['resolution']} px), "
          f"ms per optimizer step, median of {repeats} run(s):")
    print(f"{'settings':14s} " + " ".join(f"{p:>10s}" for p in PHASES) + f" {'steps/s':>8s}  precision")
    medians = {}
    for name, results in runs.items():
        cells = {p: statistics.median(r["profile_ms"].get(p, 0.0) for r in results) for p in PHASES}
        medians[name] = cells["step"]
        precision = ", ".join(f"{k}={v}" for k, v in results[0]["precision"].items()) or "as configured"
        print(f"{name:14s} " + " ".join(f"{cells[p]:10.1f}" for p in PHASES) + f" {1000 / cells['step']:8.2f}  "
              + precision)
    print(f"speed-up of the shipped settings: {medians['main e51d6d7'] / medians['shipped']:.2f}x steps/s")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or "unknown"


def torch_version() -> str:
    import torch
    return torch.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=240, help="optimizer steps per stage")
    parser.add_argument("--num-images", type=int, default=200, help="images of the tiny corpus")
    parser.add_argument("--sd21-unet", action="store_true",
                        help="also time one step of the SD-2.1-size UNet (about 14 GB of RAM with AdamW; slow)")
    parser.add_argument("--profile", action="store_true",
                        help="per-phase breakdown of each stage's step, and its speed against MAIN_OPTIONS")
    parser.add_argument("--repeats", type=int, default=2, help="with --profile: runs per setting, alternated")
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "CONFIG", "OPTIONS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_stage(args.child[0], args.child[1], json.loads(args.child[2]))))
        return

    sys.path.insert(0, REPO)
    from textssr.data.tiny_data import generate
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        generate(data, num_images=args.num_images, bench_images=2, progress=False)
        lmdb = os.path.join(data, "AnyWord-lmdb")
        common = dict(max_train_steps=args.steps, checkpointing_steps=args.steps, logging_steps=1, report_to=None,
                      resume_from_checkpoint=None)

        def per_stage(run_dir: str) -> list:
            vae, step1 = os.path.join(run_dir, "vae_ft"), os.path.join(run_dir, "step1")
            return [dict(common, output_dir=vae, lmdb_path=[f"{lmdb}/step1_lmdb", f"{lmdb}/step2_lmdb"]),
                    dict(common, output_dir=step1, lmdb_path=f"{lmdb}/step1_lmdb", pretrained_vae=vae),
                    dict(common, output_dir=os.path.join(run_dir, "step2"), lmdb_path=f"{lmdb}/step2_lmdb",
                         pretrained_vae=vae, pretrained_unet=step1)]

        if args.profile:
            runs = {name: per_stage(os.path.join(tmp, str(i))) for i, name in enumerate(SETTINGS)}
            for k, (stage, config) in enumerate(STAGES):
                options = {name: dict(runs[name][k], profile=True, logging_steps=10 ** 9, **extra)
                           for name, extra in ((name, SETTINGS[name][config]) for name in SETTINGS)}
                profile_stage(stage, config, options, args.repeats)
            print(f"\nCPU: {cpu_model()}; torch {torch_version()}, {os.cpu_count()} logical CPUs")
        else:
            print(f"{'config':28s} {'res':>4s} {'batch':>5s} {'steps/s':>8s} {'peak RSS MB':>12s}")
            for (stage, config), options in zip(STAGES, per_stage(tmp)):
                r = child(stage, config, options)
                print(f"{r['config']:28s} {r['resolution']:4d} {r['batch']:5d} {r['steps_per_s']:8.3f} "
                      f"{r['peak_rss_mb']:12d}")
    if args.sd21_unet:
        r = bench_sd21_unet(batch=1, resolution=256)
        print(f"SD-2.1-size UNet ({r['params_m']} M params), CPU, batch {r['batch']} at {r['resolution']} px: "
              f"{r['step_s']} s/step (first {r['first_step_s']} s), peak RSS {r['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
