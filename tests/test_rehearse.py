"""benchmarks/rehearse.py (make rehearse) runs end to end at tiny sizes, so the full-size rehearsal cannot rot."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_rehearsal_runs_every_stage_and_prints_its_table(tmp_path):
    out = tmp_path / "rehearsal.json"
    run = subprocess.run([sys.executable, "benchmarks/rehearse.py", "--tiny", "--root", str(tmp_path / "scratch"),
                          "--out", str(out), "--keep"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "| stage | seconds | peak RSS | all its processes (PSS) | checkpoint on disk |" in run.stdout
    rows = {r["stage"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["VAE fine-tune, 2 steps", "CDM step 1, 2 steps", "CDM step 1, resumed to 3",
                          "CDM step 2, 2 steps", "infer.py, 2 regions", "synthesize.py, 2 regions"]
    assert all(r["seconds"] > 0 and r["peak_rss_gb"] > 0.1 and r["peak_pss_gb"] > 0.1 for r in rows.values())
    assert all(rows[s]["checkpoint_gb"] > 0 for s in list(rows)[:4])  # every training stage wrote its checkpoint
    log = (tmp_path / "scratch/tiny/runs/step1/train_log.jsonl").read_text().splitlines()
    starts = [r for r in map(json.loads, log) if r["event"] == "start"]
    assert [s["step"] for s in starts] == [0, 2] and starts[1]["resumed_from"].endswith("checkpoint-2")
