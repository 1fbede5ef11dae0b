"""benchmarks/bench_gpu.py runs end to end where there is no GPU (tiny sizes), so the GPU check cannot rot."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_gpu_prints_its_table_on_a_cpu(tmp_path):
    out, scratch = tmp_path / "bench.json", tmp_path / "scratch"
    scratch.mkdir()
    run = subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--tiny", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, TMPDIR=str(scratch)))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "| model | precision | ms / micro-batch |" in run.stdout
    figures = json.loads(out.read_text())
    modes = ["fp32", "fp32+tf32", "bf16", "fp16", "bf16+ckpt"]
    for model in ("CDM", "VAE"):
        rows = [r for r in figures["steps"] if r["model"].startswith(model)]
        assert [r["mode"] for r in rows] == modes
        assert all(r["finite"] and r["all_grads"] and r["ms"] > 0 for r in rows)
    assert all(0 < r["vae_encode_share"] < 1 for r in figures["steps"] if r["model"].startswith("CDM"))
    scripts = figures["scripts"]
    assert scripts["train_to_3"]["step"] == 3 and scripts["train_to_8"]["step"] == 8
    assert scripts["train_resumed_from_3"] and scripts["ema_saved"]
    assert scripts["checkpoints_kept"] == ["checkpoint-8"]  # one kept (full size: ~15 GB each)
    assert scripts["scratch"].startswith(str(scratch))  # where TMPDIR says, and removed at the end
    assert not os.path.exists(scripts["scratch"])
    assert scripts["infer"]["crops"] > 0
