"""infer.py under `accelerate launch` with 2 CPU processes (gloo): the ranks split the bench, rank 0 merges
labels.json/meta.json, and the images equal a single-process run's (per-instance generators) up to float
summation order (another batch make-up and thread count: at most 1 gray level).
Select just this with `pytest tests/test_infer_distributed.py` (or deselect it with `-k "not two_processes"`)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from textssr.infer.settings import InferSettings
from textssr.config import load_config
from textssr.infer import run_inference

REPO = Path(__file__).resolve().parents[1]
# accelerate's --cpu flag alone runs one process (its multi-CPU launcher needs MPI); --multi_gpu launches through
# torchrun, and ACCELERATE_USE_CPU makes the ranks join a CPU (gloo) group.
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACCELERATE_USE_CPU="true")


def test_two_processes_write_the_single_process_files(tmp_path, bench_mini_dir):
    from tiny_models import save_tiny_sd21
    save_tiny_sd21(str(tmp_path / "model"))
    bench = json.loads((bench_mini_dir / "benchmark/shopsign/test.json").read_text(encoding="utf-8"))
    subset = dict(bench, data_root=str(bench_mini_dir / "benchmark/shopsign/images"),
                  data_list=bench["data_list"][:2])
    (tmp_path / "bench.json").write_text(json.dumps(subset, ensure_ascii=False), encoding="utf-8")
    opts = dict(bench=str(tmp_path / "bench.json"), pretrained_vae=str(tmp_path / "model/vae"),
                pretrained_unet=str(tmp_path / "model/unet"), scheduler_path=str(tmp_path / "model"),
                resolution=32, ttf_size=64, max_len=25, num_inference_steps=1, batch_size=2, device="cpu")

    single = run_inference(InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"),
                                       dict(opts, output_dir=str(tmp_path / "single"))))
    out = tmp_path / "two"
    run = subprocess.run([*LAUNCH, "infer.py", "--config", "configs/tiny/infer_cfg.py", "--cfg-options",
                          *[f"{k}={v}" for k, v in dict(opts, output_dir=str(out)).items()]],
                         cwd=REPO, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]

    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["processes"] == 2 and meta["complete"]
    assert meta["counts"]["written"] == single["counts"]["written"] > 2
    assert meta["skipped"] == single["skipped"]
    for name in ("labels.json", "instances.json"):
        assert (out / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    for sub in ("local", "region", "gt"):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "single" / sub).iterdir())
        for name in names:
            two, one = (np.asarray(Image.open(d / sub / name), dtype=np.int16) for d in (out, tmp_path / "single"))
            assert two.shape == one.shape and np.abs(two - one).max() <= 1, f"{sub}/{name}"
