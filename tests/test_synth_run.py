"""synthesize.py end to end on tiny random models: output layout, stats, screening, resume after
SIGKILL, 2-process sharding. Tiny SD-2.1-shaped models (save_tiny_sd21) at 32 px, 1 denoising step."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from textssr.synth.settings import SynthSettings
from textssr.config import ConfigError, load_config
from textssr.synth.runner import synthesize
from textssr.synth.str_lmdb import StrLmdbReader
from conftest import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
NUM_REGIONS = 6


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, bench_mini_dir):
    """Tiny models + an AnyWord JSON of NUM_REGIONS real regions (absolute data_root)."""
    from tiny_models import save_tiny_sd21
    root = tmp_path_factory.mktemp("synth")
    save_tiny_sd21(str(root / "model"))
    bench = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    source = {"data_root": str(bench_mini_dir / "benchmark/ic13/images"),
              "data_list": bench["data_list"][1:4]}  # 6 + 1 + 4 words
    (root / "anyword.json").write_text(json.dumps(source), encoding="utf-8")
    return root


def options(root, out, **extra):
    opts = dict(source=str(root / "anyword.json"), output_dir=str(out), max_regions=NUM_REGIONS,
                pretrained_vae=str(root / "model/vae"), pretrained_unet=str(root / "model/unet"),
                scheduler_path=str(root / "model/scheduler"), resolution=32, num_inference_steps=1,
                batch_size=2, variants_per_region=3)
    opts.update(extra)
    return opts


def config(root, out, screening="tiny", **extra):
    """The tiny synthesis settings over ``root``'s models and regions; ``screening`` replaces the config's."""
    overrides = {} if screening == "tiny" else {"screening": screening}
    return SynthSettings.load(os.path.join(REPO, "configs/tiny/synth_cfg.py"), options(root, out, **extra), **overrides)


def cli(root, out, **extra):
    args = [f"{k}={v}" for k, v in options(root, out, **extra).items()]
    return ["synthesize.py", "--config", "configs/tiny/synth_cfg.py", "--cfg-options", *args]


def records(path):
    with StrLmdbReader(path) as r:
        return [(x.image, x.label, x.wh, x.meta["region"], x.meta["variant"]) for x in r]


@pytest.fixture(scope="module")
def baseline(tiny_setup):
    """One uninterrupted single-process run, in-process, on one CPU thread like the ENV subprocesses: float
    kernels reduce in another order with another thread count, which moves a pixel by one level now and then."""
    import torch
    out, threads = tiny_setup / "baseline", torch.get_num_threads()
    torch.set_num_threads(int(ENV["OMP_NUM_THREADS"]))
    try:
        stats = synthesize(config(tiny_setup, out))
    finally:
        torch.set_num_threads(threads)
    return out, stats


def test_output_layout_and_stats(baseline):
    out, stats = baseline
    recs = records(str(out / "lmdb"))
    assert stats["regions_read"] == NUM_REGIONS and stats["items"] == 3 * NUM_REGIONS
    assert stats["kept"] == stats["generated"] == len(recs) == stats["num_samples"]
    assert len(recs) + sum(stats["skipped"].values()) == 3 * NUM_REGIONS
    assert [(r, v) for *_, r, v in recs] == sorted((r, v) for *_, r, v in recs)
    assert all(w > 0 and h > 0 for _, _, (w, h), _, _ in recs)
    saved = json.loads((out / "stats.json").read_text())
    assert saved["kept"] == len(recs) and saved["crops_per_s"] > 0
    assert (out / "contact_sheet.png").stat().st_size > 0


def test_texts_are_anagrams_of_the_region_words(baseline):
    with StrLmdbReader(str(baseline[0] / "lmdb")) as r:
        metas = [(x.label, x.meta) for x in r]
    assert metas
    for label, meta in metas:
        assert sorted(label) == sorted(meta["source_text"])
        assert (label != meta["source_text"]) == (meta["how"] == "anagram")


def test_rerun_of_a_finished_run_changes_nothing_and_changed_settings_are_refused(tiny_setup, baseline):
    out, _ = baseline
    before = records(str(out / "lmdb"))
    synthesize(config(tiny_setup, out))
    assert records(str(out / "lmdb")) == before
    with pytest.raises(ConfigError, match="variants_per_region"):
        synthesize(config(tiny_setup, out, variants_per_region=4))


def test_training_folder_resolves_to_its_latest_checkpoint_and_a_newer_one_is_refused_on_resume(tiny_setup):
    import shutil
    runs = tiny_setup / "unet_training_run"
    shutil.copytree(tiny_setup / "model/unet", runs / "checkpoint-10/unet")
    out = tiny_setup / "from_training_folder"
    cfg = config(tiny_setup, out, pretrained_unet=str(runs), max_regions=1, variants_per_region=1)
    stats = synthesize(cfg)
    assert stats["generated"] == 1
    shutil.copytree(tiny_setup / "model/unet", runs / "checkpoint-20/unet")
    with pytest.raises(ConfigError, match="resolved.pretrained_unet: .*checkpoint-10.* → .*checkpoint-20"):
        synthesize(config(tiny_setup, out, pretrained_unet=str(runs), max_regions=1, variants_per_region=1))


def test_screening_rejects_illegible_crops_by_reason(tiny_setup):
    out = tiny_setup / "screened"
    cfg = config(tiny_setup, out, max_regions=2, variants_per_region=1,
                 screening=dict(match="exact", min_confidence=0.5))  # the tiny config has screening=None
    stats = synthesize(cfg)
    # A random tiny model draws no legible word: every crop is rejected, each with its reason.
    assert stats["generated"] > 0 and stats["kept"] == 0
    assert sum(stats["rejected"].values()) == stats["generated"]
    assert set(stats["rejected"]) <= {"no_text", "low_confidence", "text_mismatch"}


def test_overlapped_batches_write_the_bytes_of_sequential_ones(tiny_setup):
    """overlap=True (the next batch built and the previous one screened and encoded in threads while one
    denoises) and overlap=False write the same records and counts, screened or not; the phases are timed."""
    counts = ("items", "generated", "kept", "rejected", "skipped", "skipped_items", "texts")
    for screening in (None, dict(match="exact", min_confidence=0.5)):
        runs = {}
        for overlap in (True, False):
            out = tiny_setup / f"overlap_{overlap}_{screening is None}"
            cfg = config(tiny_setup, out, overlap=overlap, screening=screening)
            runs[overlap] = stats = synthesize(cfg)
            assert all(stats[k] >= 0 for k in ("build_s", "wait_s", "generation_s", "screening_s", "encode_s"))
            runs[overlap]["records"] = records(str(out / "lmdb"))
        assert {k: runs[True][k] for k in counts + ("records",)} == {k: runs[False][k] for k in counts + ("records",)}
        if screening is None:
            assert runs[True]["kept"] == len(runs[True]["records"]) > 0
        else:  # the tiny random model draws nothing legible: every crop read and rejected
            assert sum(runs[True]["rejected"].values()) == runs[True]["generated"] > 0


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failed_commit_of_the_last_batch_stops_the_run(tiny_setup, tmp_path, monkeypatch, overlap):
    """With overlap the last batch is committed in a helper thread: its error (a full disk) must still surface,
    and the shard must not be marked done without it."""
    from textssr.synth.str_lmdb import StrLmdbWriter
    commit = StrLmdbWriter.commit

    def disk_full_at_the_end(self, records, state=None):
        if state and state.get("done"):
            raise OSError("No space left on device")
        return commit(self, records, state)
    monkeypatch.setattr(StrLmdbWriter, "commit", disk_full_at_the_end)
    out = tmp_path / "full"
    with pytest.raises(OSError, match="No space left"):
        synthesize(config(tiny_setup, out, overlap=overlap, screening=None))
    monkeypatch.setattr(StrLmdbWriter, "commit", commit)
    with StrLmdbReader(str(out / "lmdb")) as reader:
        assert not reader.state["done"] and 0 < reader.state["cursor"]


def test_ocr_threads_share_the_cores_among_local_ranks(monkeypatch):
    from textssr.synth.runner import ocr_threads
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert ocr_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert ocr_threads() == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert ocr_threads() == 16


def signal_mid_run(proc, out, sig) -> None:
    """Send ``sig`` to the synthesis ``proc`` writing ``out`` as soon as some batch, but not the last, is
    committed to its LMDB (polled; nothing is sent if it ends first)."""
    while proc.poll() is None:
        if os.path.isfile(out / "lmdb/data.mdb"):
            with StrLmdbReader(str(out / "lmdb")) as r:
                state = r.state
            if state and 0 < state["cursor"] and not state["done"]:
                proc.send_signal(sig)
                return
        time.sleep(0.005)


def test_sigkill_then_resume_gives_the_uninterrupted_set(tiny_setup, baseline):
    out = tiny_setup / "killed"
    proc = subprocess.Popen([sys.executable, *cli(tiny_setup, out)], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal_mid_run(proc, out, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    resumed = subprocess.run([sys.executable, *cli(tiny_setup, out)], cwd=REPO, env=ENV,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert records(str(out / "lmdb")) == records(str(baseline[0] / "lmdb"))


def test_two_processes_shard_and_merge_to_the_single_process_set(tiny_setup, baseline):
    out = tiny_setup / "sharded"
    # accelerate's --cpu launcher starts a single process without MPI; --multi_gpu uses torchrun and,
    # with ACCELERATE_USE_CPU, the ranks join a CPU (gloo) group.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    run = subprocess.run([*launch, *cli(tiny_setup, out)], cwd=REPO, env=dict(ENV, ACCELERATE_USE_CPU="true"),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (out / "shards").exists()
    sharded, single = records(str(out / "lmdb")), records(str(baseline[0] / "lmdb"))
    # Same texts in the same (region, variant) order; pixels may differ only through batch composition.
    assert [r[1:] for r in sharded] == [r[1:] for r in single]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["processes"] == 2 and stats["kept"] == len(single)


def test_config_mistake_is_one_line_and_exit_2(tmp_path, capsys):
    sys.path.insert(0, REPO)
    from synthesize import main
    with pytest.raises(SystemExit) as exc:
        main(["--config", os.path.join(REPO, "configs/tiny/synth_cfg.py"), "--cfg-options",
              f"source={tmp_path}/missing.json", f"output_dir={tmp_path}/o"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "source" in err and "missing.json" in err


def test_a_changed_source_is_refused_on_resume(tiny_setup, tmp_path):
    """Items are (region index, variant): a source edited between a run and its resume would shift them."""
    source = json.loads((tiny_setup / "anyword.json").read_text(encoding="utf-8"))
    path = tmp_path / "source.json"
    path.write_text(json.dumps(source), encoding="utf-8")
    out = tmp_path / "out"
    synthesize(config(tiny_setup, out, source=str(path), max_regions=2, variants_per_region=1))
    source["data_list"][0]["annotations"].pop(0)
    path.write_text(json.dumps(source), encoding="utf-8")
    with pytest.raises(ConfigError, match="another version of source="):
        synthesize(config(tiny_setup, out, source=str(path), max_regions=2, variants_per_region=1))


def test_a_bad_region_is_counted_once_not_per_variant(tiny_setup, tmp_path):
    source = json.loads((tiny_setup / "anyword.json").read_text(encoding="utf-8"))
    first = source["data_list"][0]
    source["data_list"].insert(0, json.loads(json.dumps(dict(first, img_name="no_such_image.jpg"))))  # a deep copy
    source["data_list"][1]["annotations"][0]["text"] = "A\nB"  # a newline used to crash the glyph renderer
    path = tmp_path / "source.json"
    path.write_text(json.dumps(source), encoding="utf-8")
    stats = synthesize(config(tiny_setup, tmp_path / "out", source=str(path), max_regions=None,
                              variants_per_region=3))
    from textssr.data import AnyWordDataset
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regions = AnyWordDataset(str(path), resolution=32)
    missing = sum(regions.instance_info(k)["img_name"] == "no_such_image.jpg" for k in range(len(regions)))
    assert missing >= 4
    assert stats["skipped"] == {"image_missing": missing}  # each region once, although 3 variants were due
    assert stats["skipped_items"] == 3 * missing
    assert stats["skipped_at_index"]["text_control_chars"] == 1
    assert stats["skipped_at_index"] == dict(regions.skip_counts)
    assert stats["generated"] == stats["items"] - stats["skipped_items"]


def test_ctrl_c_is_one_line_and_the_rerun_resumes(tiny_setup, baseline):
    out = tiny_setup / "interrupted"
    proc = subprocess.Popen([sys.executable, *cli(tiny_setup, out)], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,  # SIGINT at its default even where it is ignored:
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # see test_interrupts
    signal_mid_run(proc, out, signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    resumed = subprocess.run([sys.executable, *cli(tiny_setup, out)], cwd=REPO, env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert records(str(out / "lmdb")) == records(str(baseline[0] / "lmdb"))



def test_two_machines_of_one_process_merge_to_the_one_machine_set(tiny_setup):
    """`accelerate launch --num_machines 2 --machine_rank r --main_process_ip ...` on 127.0.0.1, one process
    per 'machine', sharing the output folder as machines share a network file system: the merged set is the
    set of 2 processes on one machine (texts, order, sizes; pixels within the last bits of batch make-up)."""
    port = free_port()
    common = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
              "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    out, one_machine = tiny_setup / "two_machines", tiny_setup / "one_machine"
    env = dict(ENV, ACCELERATE_USE_CPU="true")
    machines = [subprocess.Popen([*common, "--machine_rank", str(rank), *cli(tiny_setup, out)], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = [m.communicate(timeout=600) for m in machines]
    assert [m.returncode for m in machines] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
              "--dynamo_backend", "no"]
    run = subprocess.run([*launch, *cli(tiny_setup, one_machine)], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    two, one = records(str(out / "lmdb")), records(str(one_machine / "lmdb"))
    assert [r[1:] for r in two] == [r[1:] for r in one] and len(two) > 0
    assert json.loads((out / "stats.json").read_text())["processes"] == 2
