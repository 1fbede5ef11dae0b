"""What ``make str-demo`` runs after ``make demo``: does TextSSR-F train a better recogniser? On the embedded tiny
corpus, each step the command a user would type (printed before it runs):

1. TextSSR-F: ``synthesize.py`` with the demo's checkpoints over 300 of the tiny corpus's training regions (anagrams,
   screened by PP-OCRv4 as in the paper);
2. real crops as STR LMDBs (``python -m textssr.str.lmdb_convert``): the tiny corpus's training words, the tiny
   bench's words (the test set), and — where ``../shared/data`` is present — its real photos' words;
3. a tiny OpenOCR SVTRv2 (configs/str/tiny) trained for the same number of steps on (a) the real crops, (b) the
   TextSSR-F, (c) both, each evaluated on every test set (train_str.py prints its table: one row per set, the
   shared sets' arithmetic and weighted averages);
4. how readable the TextSSR-F is: ``train_str.py --eval-only`` of (a), the recogniser that never saw it, on it;
5. a table of the word accuracies (case-insensitive alphanumeric; exact in parentheses) and the time each step took.

    python -m textssr.demo.recognizer [--python .venv/bin/python]

Re-running reuses what exists (finished trainings are evaluated again in seconds); ``rm -rf output/str/demo
data/str`` starts afresh.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

from textssr.demo import cpu_model, run
from textssr.models.loading import find_checkpoints

TINY_MODELS = ("model/tiny/vae_ft", "model/tiny/step2")
OUT = "output/str/demo"
TEXTSSR_F = f"{OUT}/textssr_f"
SHARED = os.environ.get("TEXTSSR_SHARED_DATA", os.path.join("..", "shared", "data"))
SYNTH_OPTIONS = ["source=data/tiny/train.json", f"output_dir={TEXTSSR_F}", "max_regions=300", "variants_per_region=2",
                 "screening.match=exact", "screening.min_ned=1.0", "screening.min_confidence=0.0",
                 "screening.case_sensitive=False", "screening.ignore_spaces=True"]
TRAININGS = (("tiny corpus real crops", "real", ["data/str/tiny_train"]),
             ("TextSSR-F (demo checkpoints)", "textssr_f", [f"{TEXTSSR_F}/lmdb"]),
             ("both", "both", ["data/str/tiny_train", f"{TEXTSSR_F}/lmdb"]))


def convert(py: str, out: str, *source: str) -> Optional[float]:
    if os.path.isfile(os.path.join(out, "data.mdb")):
        return None
    return run([py, "-m", "textssr.str.lmdb_convert", *source, "--out", out])


def test_sets(py: str, rows: List[Tuple[str, float]]) -> Tuple[Dict[str, str], List[str]]:
    """(``test_data`` name → STR LMDB or folder of them, the test set names train_str.py reports), converted on
    first use. The real photos of ../shared/data are one folder: one test set per LMDB, with their averages."""
    sets, names = {"tiny_bench": "data/str/tiny_bench"}, ["tiny_bench"]
    seconds = convert(py, sets["tiny_bench"], "--bench", "data/tiny/bench")
    if os.path.isdir(SHARED):
        icdar_json = "data/str/shared_icdar15.json"
        if not os.path.isfile(icdar_json):
            run([py, "-m", "textssr.data.icdar15", "--gt-dir", os.path.join(SHARED, "icdar15_toy"),
                 "--out", icdar_json])
        crops = os.path.join(SHARED, "real_word_crops")
        sets["shared"] = "data/str/shared"
        for name, source in (("icdar15", ["--bench", icdar_json]),
                             ("real_crops", ["--results", crops, "--crops", "."]),
                             ("textssr_bench_ic13", ["--bench",
                                                     os.path.join(SHARED, "textssr_bench_mini/benchmark/ic13")])):
            names.append(f"shared/{name}")
            seconds = (convert(py, f"data/str/shared/{name}", *source) or 0) + (seconds or 0)
    rows.append(("real test crops → STR LMDBs", seconds or 0.0))
    return sets, names


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the project's environment")
    py = parser.parse_args(argv).python
    # One OpenMP thread per process: on 2 cores shared with other work, a 2-thread process stalls at every barrier
    # whenever a core is taken (a tiny CDM step measured ~40x slower so); the loader worker uses the other core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    missing = [m for m in TINY_MODELS if not find_checkpoints(m)]
    if missing or not os.path.isfile("data/tiny/train.json"):
        sys.exit(f"error: no tiny demo checkpoints in {', '.join(missing) or 'model/tiny'} (or no data/tiny): "
                 "run `make demo` first")
    started = time.perf_counter()
    rows: List[Tuple[str, float]] = []
    if not os.path.isfile(os.path.join(TEXTSSR_F, "stats.json")):
        rows.append(("TextSSR-F (synthesize.py)", run([py, "synthesize.py", "--config", "configs/tiny/synth_cfg.py",
                                                       "--cfg-options", *SYNTH_OPTIONS])))
    with open(os.path.join(TEXTSSR_F, "stats.json"), encoding="utf-8") as f:
        synth = json.load(f)
    seconds = convert(py, "data/str/tiny_train", "--bench", "data/tiny/train.json")
    rows.append(("train crops → STR LMDB", seconds or 0.0))
    tests, names = test_sets(py, rows)
    results = {}
    for label, name, data in TRAININGS:
        options = [f"output_dir={OUT}/train_{name}", f"train_data=[{','.join(data)}]"]
        options += [f"test_data.{t}={path}" for t, path in tests.items()]
        rows.append((f"train + eval: {label}", run([py, "train_str.py", "--config", "configs/str/tiny/train_str_cfg.py",
                                                    "--cfg-options", *options])))
        with open(os.path.join(OUT, f"train_{name}", "metrics.json"), encoding="utf-8") as f:
            results[label] = json.load(f)
    # readability of TextSSR-F: the recogniser trained on real crops alone reads it (the paper's readability check)
    readable = f"{OUT}/readability"
    rows.append(("TextSSR-F read by (a): --eval-only", run([
        py, "train_str.py", "--config", "configs/str/tiny/train_str_cfg.py", "--eval-only", "--checkpoint",
        f"{OUT}/train_{TRAININGS[0][1]}/latest.pth", "--cfg-options", f"output_dir={readable}",
        f"test_data=dict(textssr_f='{TEXTSSR_F}/lmdb')"])))
    with open(os.path.join(readable, "metrics.json"), encoding="utf-8") as f:
        readability = json.load(f)["test_sets"]["textssr_f"]
    total = time.perf_counter() - started

    print(f"\nstr-demo on {cpu_model()} ({os.cpu_count()} logical CPUs); TextSSR-F: {synth['kept']} of "
          f"{synth['generated']} crops kept by screening")
    for name, seconds in rows:
        print(f"  {name:40s} {seconds:7.1f} s")
    print(f"  {'total':40s} {total:7.1f} s ({total / 60:.1f} min)")
    first = next(iter(results.values()))
    steps = sorted({m["checkpoint"]["global_step"] for m in results.values()})
    shared = first["groups"].get("shared", {})
    averages = [k for k in ("arithmetic_avg", "weighted_avg") if k in shared]
    print(f"\nword accuracy case-insensitive alphanumeric (exact) / NED (1 - normalised edit distance), tiny SVTRv2, "
          f"{'-'.join(str(n) for n in (steps[0], steps[-1]) if n) if len(steps) > 1 else steps[0]} steps each")
    print("| trained on | " + " | ".join(f"{t} (n={first['test_sets'][t]['num_samples']})" for t in names) +
          "".join(f" | shared {k.replace('_avg', '')} avg (n={shared['num_samples']})" for k in averages) + " |")
    print("|---" * (len(names) + len(averages) + 1) + "|")
    for label, metrics in results.items():
        cells = [f"{m['acc']:.3f} ({m['acc_exact']:.3f}) / {m['norm_edit_dis']:.3f}" if m.get("acc") is not None
                 else "-" for m in [metrics["test_sets"][t] for t in names] +
                 [metrics["groups"]["shared"][k] for k in averages]]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nTextSSR-F read by (a), the recogniser trained on real crops only: word accuracy "
          f"{readability['acc']:.3f} (exact {readability['acc_exact']:.3f}), NED {readability['norm_edit_dis']:.3f}, "
          f"n={readability['num_samples']}")
    with open(os.path.join(OUT, "table.json"), "w", encoding="utf-8") as f:
        json.dump({"times": rows, "total_s": total, "results": results, "textssr_f": synth,
                   "readability": readability}, f, indent=1)


if __name__ == "__main__":
    main()
