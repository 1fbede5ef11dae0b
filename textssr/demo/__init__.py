"""The whole of TextSSR on the embedded tiny corpus, as ``make demo`` runs it: corpus → VAE fine-tune → CDM step 1
→ CDM step 2 → infer → eval, each stage the command a user would type (printed before it runs), then a table of
the time each stage took, the precision it chose (``"auto"`` settings are timed on this machine) and the scores.

    python -m textssr.demo [--python .venv/bin/python]

Re-running resumes every stage (finished ones take seconds); ``make clean-demo`` starts afresh.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import List, Optional, Tuple

TRAINING = (("VAE fine-tune", "train_vae.py", "configs/tiny/train_vae_cfg.py", "model/tiny/vae_ft"),
            ("CDM step 1", "train_diff.py", "configs/tiny/train_diff_step1_cfg.py", "model/tiny/step1"),
            ("CDM step 2", "train_diff.py", "configs/tiny/train_diff_step2_cfg.py", "model/tiny/step2"))
RESULTS = "output/tiny"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def launch_command(python: str, script: str, config: str) -> List[str]:
    accelerate = os.path.join(os.path.dirname(python), "accelerate")
    return [accelerate, "launch", "--cpu", "--num_machines", "1", "--num_processes", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--num_cpu_threads_per_process", str(os.cpu_count() or 1), script,
            "--config", config]


def run(command: List[str]) -> float:
    """Run ``command`` (output streamed), stop the demo when it fails; its wall time in seconds."""
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.perf_counter()
    code = subprocess.call(command)
    if code:
        sys.exit(f"demo stopped: the command above failed (exit status {code}); fix it and rerun `make demo` "
                 "to resume")
    return time.perf_counter() - start


def precision_of(run_dir: str, since: float) -> str:
    """The precision choices a training run logged at or after ``since`` (train_log.jsonl), or what its config
    fixed."""
    path = os.path.join(run_dir, "train_log.jsonl")
    found = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record.get("event") == "precision" and record.get("time", 0) >= since:
                    found[record["key"]] = record["dtype"]
    return ", ".join(f"{k}={v}" for k, v in sorted(found.items())) or "no new steps (resumed a finished run)"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the project's environment")
    args = parser.parse_args(argv)
    py = args.python
    rows: List[Tuple[str, float, str]] = []
    started = time.perf_counter()
    rows.append(("tiny corpus", run([py, "-m", "textssr.data.tiny_data", "--out", "data/tiny"]), "-"))
    for name, script, config, run_dir in TRAINING:
        since = time.time()
        seconds = run(launch_command(py, script, config))
        rows.append((name, seconds, precision_of(run_dir, since)))
    seconds = run([py, "infer.py", "--config", "configs/tiny/infer_cfg.py"])
    with open(os.path.join(RESULTS, "meta.json"), encoding="utf-8") as f:
        rows.append(("infer", seconds, json.load(f).get("dtype", "?")))
    rows.append(("eval (PP-OCRv4)", run([py, "eval.py", "--results", RESULTS]), "onnxruntime fp32"))
    total = time.perf_counter() - started
    with open(os.path.join(RESULTS, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)

    print(f"\ndemo on {cpu_model()} ({os.cpu_count()} logical CPUs)")
    print(f"{'stage':18s} {'seconds':>8s}  precision")
    for name, seconds, precision in rows:
        print(f"{name:18s} {seconds:8.1f}  {precision}")
    print(f"{'total':18s} {total:8.1f}  ({total / 60:.1f} min after installation)")
    ceiling = metrics.get("ceiling", {})
    print(f"sen_acc {metrics['sen_acc']:.3f}  ned {metrics['ned']:.3f}  (OCR ceiling on the real crops: sen_acc "
          f"{ceiling.get('sen_acc', float('nan')):.3f}, ned {ceiling.get('ned', float('nan')):.3f}; "
          f"{metrics['num']} bench words)")

