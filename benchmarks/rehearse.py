"""The full-size path, rehearsed on the CPU: the shipped configs on SD 2.1-shaped random models, one command.

    python benchmarks/rehearse.py [--root DIR] [--tiny] [--keep]      (make rehearse)

Writes an SD 2.1-shaped model folder with random weights (``vae/``, ``unet/``, ``scheduler/`` with the hub's
configs, built from code: nothing is downloaded), a tiny AnyWord-lmdb corpus, and a two-region bench cut from
``/work/shared/data/textssr_bench_mini`` (or the tiny corpus's bench when that is absent); then runs the SHIPPED
full-size configs (``configs/*.py``), overriding only steps, batch, workers, paths and gradient checkpointing:

    VAE fine-tune 2 steps → CDM step 1 for 2 steps → the same command resumed to step 3 → CDM step 2 for 2 steps
    from it → infer.py on two bench regions → synthesize.py on two regions (mixed_precision="no": the shipped
    "fp16" needs a GPU; screening=None: random weights draw no readable text, and an empty LMDB is an error)

Each stage is the command a user types (printed before it runs), one process on the CPU. The table: stage, wall
seconds, peak RSS of the stage's largest process (``wait4``: exact, not sampled), peak PSS of all its processes
together (sampled twice a second: counts the pages forked DataLoader workers keep) and the size on disk of the
checkpoint it wrote. ``--tiny`` runs the same on tiny models in a minute (to work on this script). Not in CI: the
full-size run needs ~17 GB of RAM, ~45 GB of disk under ``--root`` and ~30 minutes on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

SHARED_BENCH = "/work/shared/data/textssr_bench_mini/benchmark/ic13/test.json"
REGIONS = 2  # bench regions for infer.py and synthesize.py


def write_models(folder: str, shape: str) -> str:
    """An SD 2.1-shaped folder with random weights: vae/ (the hub's vae config), unet/ (its 4-channel
    UNet2DConditionModel config; ``shape="half"``: at half its width), scheduler/ (its scheduler config); or tiny
    models in that layout (``shape="tiny"``). Kept when complete (``.complete``)."""
    marker = os.path.join(folder, ".complete")
    if os.path.isfile(marker):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    if shape == "tiny":
        from tiny_models import save_tiny_sd21
        save_tiny_sd21(folder)
    else:
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from diffusers_textssr.unet import UNET_DEFAULTS
        from textssr.models.arch import SD21_SCHEDULER_CONFIG, SD21_VAE_ARCH
        # stabilityai/stable-diffusion-2-1 unet/config.json: diffusers' defaults but for UNET_DEFAULTS' keys, with
        # SD's own 4 input channels and 96 × 96 latents (768 px)
        unet_config = dict(UNET_DEFAULTS, in_channels=4, sample_size=96)
        if shape == "half":
            unet_config["block_out_channels"] = (160, 320, 640, 640)
        torch.manual_seed(0)
        AutoencoderKL(**SD21_VAE_ARCH).save_pretrained(os.path.join(folder, "vae"))
        UNet2DConditionModel(**unet_config).save_pretrained(os.path.join(folder, "unet"))
        DDIMScheduler.from_config(SD21_SCHEDULER_CONFIG).save_pretrained(os.path.join(folder, "scheduler"))
    open(marker, "w").close()
    return folder


def write_bench(root: str, corpus: str) -> str:
    """An AnyWord JSON holding the first REGIONS regions of the shared mini bench (real photos), or of the tiny
    corpus's bench where the shared data is absent; its data_root is absolute."""
    source = SHARED_BENCH if os.path.isfile(SHARED_BENCH) else os.path.join(corpus, "bench", "test.json")
    with open(source, encoding="utf-8") as f:
        bench = json.load(f)
    data_root = bench["data_root"]
    if not os.path.isabs(data_root):  # the original's "./benchmark/<name>/images": relative to the bench's parent
        base = os.path.dirname(source)
        data_root = next((p for p in (os.path.join(base, "images"), os.path.join(base, data_root))
                          if os.path.isdir(p)), data_root)
    items, left = [], REGIONS
    for item in bench["data_list"]:
        annotations = [a for a in item["annotations"] if a.get("valid", True)][:left]
        if annotations:
            items.append(dict(item, annotations=annotations))
            left -= len(annotations)
        if not left:
            break
    path = os.path.join(root, "bench", "test.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dict(data_root=os.path.abspath(data_root), data_list=items), f, ensure_ascii=False, indent=1)
    return path


def disk_gb(path: Optional[str]) -> Optional[float]:
    """Bytes allocated on disk under ``path`` (GB), or None."""
    if not path or not os.path.exists(path):
        return None
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(folder, f)).st_blocks * 512 for f in files)
    return total / 1e9


def tree_pss(pid: int) -> float:
    """Proportional set size (bytes) of ``pid`` and its descendants: what they hold together, each shared page
    counted once — pages a forked DataLoader worker keeps after the trainer wrote its copy count too."""
    import psutil
    total = 0
    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        try:
            with open(f"/proc/{process.pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration):
            pass
    return total


def run_stage(command: List[str], log_path: str) -> tuple:
    """Run ``command`` from the repository root (output into ``log_path`` and its tail on failure); return (wall
    seconds, peak RSS in GB of its largest process, peak PSS in GB of all its processes together, sampled twice a
    second)."""
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.perf_counter()
    peak_pss, done = [0], threading.Event()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))

        def sample():
            while not done.wait(0.5):
                peak_pss[0] = max(peak_pss[0], tree_pss(process.pid))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4's rusage is the child's with its waited-for descendants (accelerate launch → the training process):
        # ru_maxrss is the largest of their peaks, exact
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-4000:]
        sys.exit(f"{tail}\nrehearsal stopped: the command above failed (exit status {process.returncode}); its "
                 f"log: {log_path}")
    return seconds, usage.ru_maxrss / 1e6, peak_pss[0] / 1e9  # ru_maxrss: kB


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "textssr-rehearse"),
                        help="scratch folder: models, data, run folders (default: $TMPDIR/textssr-rehearse)")
    parser.add_argument("--tiny", action="store_true", help="tiny models instead of SD 2.1's shapes (minutes)")
    parser.add_argument("--half-unet", action="store_true", help="SD 2.1's UNet at half its width (a third of the "
                        "memory: room for --workers beside other jobs)")
    parser.add_argument("--resume-only", action="store_true", help="only CDM step 1 for 2 steps and resumed to 3, "
                        "from the SD 2.1 folder's VAE: fresh vs resumed memory in minutes")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (the SD 2.1 folder is kept anyway)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the project's environment")
    parser.add_argument("--out", help="also write the table as JSON here")
    parser.add_argument("--workers", type=int, default=0, help="dataloader_num_workers of the training stages "
                        "(default 0; each worker is forked from the trainer, and the weights it keeps in copy-on-write "
                        "pages add the UNet's size, 3.8 GB, to the run: too much beside other jobs on 24 GB)")
    args = parser.parse_args(argv)
    shape = "tiny" if args.tiny else "half" if args.half_unet else "full"
    label = {"tiny": "tiny models", "half": "SD 2.1 shapes, UNet at half width", "full": "SD 2.1 shapes"}[shape]
    root = os.path.abspath(os.path.join(args.root, shape))
    runs = os.path.join(root, "runs")
    shutil.rmtree(runs, ignore_errors=True)
    os.makedirs(runs)
    started = time.perf_counter()

    print(f"rehearsal ({label}, random weights) under {root}", flush=True)
    from textssr.data.tiny_data import generate
    sd = write_models(os.path.join(root, "stable-diffusion-v2-1"), shape)
    corpus = os.path.join(root, "data")
    generate(corpus, num_images=8, bench_images=1, seed=3, progress=False)
    bench = write_bench(root, corpus)
    lmdb = os.path.join(corpus, "AnyWord-lmdb")
    vae_dir, step1, step2 = (os.path.join(runs, name) for name in ("vae_ft", "step1", "step2"))

    accelerate = [args.python, "-m", "accelerate.commands.launch", "--cpu", "--num_machines", "1",
                  "--num_processes", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--num_cpu_threads_per_process", str(os.cpu_count() or 1)]
    train = ["train_batch_size=1", "gradient_accumulation_steps=1", f"dataloader_num_workers={args.workers}",
             "gradient_checkpointing=True", f"pretrained_model_name_or_path={sd}"]
    stages = [  # (stage, command, checkpoint it writes)
        ("VAE fine-tune, 2 steps", accelerate + [
            "train_vae.py", "--config", "configs/train_vae_cfg.py", "--cfg-options", *train, "max_train_steps=2",
            f"lmdb_path={lmdb}", f"output_dir={vae_dir}"], os.path.join(vae_dir, "checkpoint-2"))]
    cdm1 = accelerate + ["train_diff.py", "--config", "configs/train_diff_step1_cfg.py", "--cfg-options", *train,
                         f"lmdb_path={lmdb}/step1_lmdb", f"output_dir={step1}",
                         f"pretrained_vae={os.path.join(sd, 'vae') if args.resume_only else vae_dir}"]
    stages += [
        ("CDM step 1, 2 steps", cdm1 + ["max_train_steps=2"], os.path.join(step1, "checkpoint-2")),
        ("CDM step 1, resumed to 3", cdm1 + ["max_train_steps=3"], os.path.join(step1, "checkpoint-3")),
        ("CDM step 2, 2 steps", accelerate + [
            "train_diff.py", "--config", "configs/train_diff_step2_cfg.py", "--cfg-options", *train,
            "max_train_steps=2", f"lmdb_path={lmdb}/step2_lmdb", f"pretrained_vae={vae_dir}",
            f"pretrained_unet={step1}", f"output_dir={step2}"], os.path.join(step2, "checkpoint-2")),
        (f"infer.py, {REGIONS} regions", [
            args.python, "infer.py", "--config", "configs/infer_cfg.py", "--cfg-options", f"bench={bench}",
            f"output_dir={os.path.join(runs, 'infer')}", f"pretrained_vae={vae_dir}", f"pretrained_unet={step2}",
            f"scheduler_path={sd}", "batch_size=2"], None),
        (f"synthesize.py, {REGIONS} regions", [
            args.python, "synthesize.py", "--config", "configs/synth_cfg.py", "--cfg-options", f"source={bench}",
            f"max_regions={REGIONS}", f"output_dir={os.path.join(runs, 'synth')}", f"pretrained_vae={vae_dir}",
            f"pretrained_unet={step2}", f"scheduler_path={sd}", "batch_size=8", "mixed_precision=no",
            "screening=None"], None),
    ]
    if args.resume_only:
        stages = stages[1:3]
    rows = []
    for name, command, checkpoint in stages:
        seconds, peak, pss = run_stage(command, os.path.join(runs, f"{len(rows)}.log"))
        rows.append(dict(stage=name, seconds=round(seconds, 1), peak_rss_gb=round(peak, 2), peak_pss_gb=round(pss, 2),
                         checkpoint_gb=None if checkpoint is None else round(disk_gb(checkpoint), 2)))
        print(f"  {name}: {seconds:.0f} s, peak RSS {peak:.2f} GB, all processes {pss:.2f} GB", flush=True)

    fresh, resumed = (next(r for r in rows if r["stage"].startswith(f"CDM step 1, {s}")) for s in ("2", "resumed"))
    lines = [f"rehearsal on {cpu_model()} ({os.cpu_count()} logical CPUs), {time.strftime('%Y-%m-%d')}, "
             f"{label}, dataloader_num_workers={args.workers}; total {time.perf_counter() - started:.0f} s",
             "", "| stage | seconds | peak RSS | all its processes (PSS) | checkpoint on disk |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        size = "-" if r["checkpoint_gb"] is None else f"{r['checkpoint_gb']:.2f} GB"
        lines.append(f"| {r['stage']} | {r['seconds']:.0f} | {r['peak_rss_gb']:.2f} GB | {r['peak_pss_gb']:.2f} GB | "
                     f"{size} |")
    lines.append(f"\nCDM step 1, resume / fresh: peak RSS {resumed['peak_rss_gb'] / fresh['peak_rss_gb']:.2f}, all "
                 f"processes {resumed['peak_pss_gb'] / fresh['peak_pss_gb']:.2f}")
    print("\n".join(lines), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(dict(cpu=cpu_model(), date=time.strftime("%Y-%m-%d"), shape=shape, workers=args.workers,
                           rows=rows), f, indent=2)
    if not args.keep:
        shutil.rmtree(runs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
