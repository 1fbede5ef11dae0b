"""TextSSR-F synthesis throughput and memory on tiny random models (CPU unless a GPU is visible).

Prints crops/s end to end, the time of each phase (building samples, generation, OCR screening, encoding — the
CPU phases overlap generation in threads) and how long generation waited for a built batch, and the peak RSS of
a run over 1× and 4× the number of regions (flat memory: the 4× run must not need 4× the memory). Then a run from
a folder of real photos (../shared/data/icdar15_toy's images, no annotations): the detection phase (PP-OCRv4
finding the text lines, photos/s) in its thread beside the generation (``detection="beside"``) and before it
(``"first"``), how long building samples waited for a detection, and a rerun over the stored detections.

    python benchmarks/bench_synth.py [--regions 16] [--resolution 64] [--steps 2] [--batch-size 8] [--photos 10]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "..", "shared", "data", "textssr_bench_mini", "benchmark", "ic13")
PHOTOS = os.path.join(REPO, "..", "shared", "data", "icdar15_toy")

CHILD = r"""
import json, resource, sys
from textssr.synth.settings import SynthSettings
from textssr.synth.runner import synthesize
opts = json.loads(sys.argv[2])
screening = opts.pop("screening")  # replaces the tiny config's None whole
cfg = SynthSettings.load(sys.argv[1], opts, screening=screening)
stats = synthesize(cfg)
stats["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("STATS" + json.dumps(stats))
"""


def make_source(root: str, regions: int) -> str:
    """An AnyWord JSON that repeats the mini IC13 benchmark's images until it holds ``regions`` regions."""
    with open(os.path.join(BENCH, "test.json"), encoding="utf-8") as f:
        bench = json.load(f)
    entries, n = [], 0
    while n < regions:
        for entry in bench["data_list"]:
            if n >= regions:
                break
            entries.append(entry)
            n += len(entry["annotations"])
    path = os.path.join(root, f"anyword_{regions}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"data_root": os.path.abspath(os.path.join(BENCH, "images")), "data_list": entries}, f)
    return path


def photo_folder(root: str, count: int) -> str:
    """A folder of ``count`` real photos (the ICDAR 2015 toy set's images, repeated under new names), no annotations."""
    names = sorted(n for n in os.listdir(PHOTOS) if n.endswith(".jpg"))
    folder = os.path.join(root, f"photos_{count}")
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        shutil.copy(os.path.join(PHOTOS, names[i % len(names)]), os.path.join(folder, f"photo_{i}.jpg"))
    return folder


def run(root: str, models: str, regions: int, args, screening, source=None, name=None, **extra) -> dict:
    opts = dict(source=source or make_source(root, regions),
                output_dir=os.path.join(root, name or f"out_{regions}_{bool(screening)}"),
                max_regions=regions, pretrained_vae=os.path.join(models, "vae"),
                pretrained_unet=os.path.join(models, "unet"), scheduler_path=os.path.join(models, "scheduler"),
                resolution=args.resolution, num_inference_steps=args.steps, batch_size=args.batch_size,
                variants_per_region=1, screening=screening, **extra)
    cmd = [sys.executable, "-c", CHILD, os.path.join(REPO, "configs/tiny/synth_cfg.py"), json.dumps(opts)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"synthesis of {regions} regions failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("STATS", 1)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--photos", type=int, default=10, help="photos of the detection run (0: no such run)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from tiny_models import save_tiny_sd21  # the tests' tiny random models
    with tempfile.TemporaryDirectory() as root:
        models = os.path.join(root, "model")
        save_tiny_sd21(models)
        screening = dict(match="exact", min_confidence=0.0)
        print(f"tiny SD-2.1-shaped models, {args.resolution}px, {args.steps} steps, batch {args.batch_size}")
        for scale in (1, 4):
            n = scale * args.regions
            s = run(root, models, n, args, screening)
            print(f"{n:5d} regions: {s['generated']} crops in {s['wall_s']:.2f} s = {s['crops_per_s']:.2f} crops/s "
                  f"end to end | peak RSS {s['peak_rss_mib']:.0f} MiB")
            print("       phases, s (build / screening / encode run in threads beside generation): "
                  + " | ".join(f"{k[:-2]} {s[k]:.2f}" for k in ("build_s", "generation_s", "screening_s", "encode_s"))
                  + f" | generation waited for a built batch {s['wait_s']:.2f}")
        if args.photos:
            source = photo_folder(root, args.photos)
            runs = (("detecting beside generation", "out_photos", "beside"),
                    ("detecting first", "out_photos_first", "first"), ("stored detections", "out_photos", "first"))
            for label, name, detection in runs:
                started = time.perf_counter()
                s = run(root, models, None, args, screening, source=source, name=name, detection=detection)
                wall, src = time.perf_counter() - started, s["source"]
                phase = (f"detection {src['detection_s']:.1f} s ({args.photos / src['detection_s']:.2f} photos/s), "
                         if label != "stored detections" else "")
                print(f"{args.photos:5d} photos, {label}: {src['lines_detected']} lines, {src['lines_kept']} kept → "
                      f"{s['generated']} crops | process {wall:.1f} s: {phase}samples waited for detection "
                      f"{s['detection_wait_s']:.2f} s, synthesis {s['wall_s']:.2f} s")
                shutil.rmtree(os.path.join(root, name, "lmdb"))  # the rerun synthesizes again


if __name__ == "__main__":
    main()
