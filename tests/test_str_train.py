"""train_str.py end to end: an OpenOCR recogniser trained for a few steps on an LMDB written by synthesize.py
(tiny random models) plus one of bad samples, evaluated on real crops converted from ../shared/data; a 2-process
torchrun that is one run; --eval-only; resume after SIGKILL; start-up refusals. Tiny SVTRv2 (configs/str/tiny), CPU,
one thread per process."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from str_fixtures import BAD_SAMPLES, require_openocr, write_raw_lmdb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
TINY = "configs/str/tiny/train_str_cfg.py"


@pytest.fixture(scope="module")
def str_data(tmp_path_factory, bench_mini_dir, real_crops_dir):
    """(TextSSR-F LMDB by synthesize.py, an LMDB of bad samples, the real crops as an STR LMDB test set)."""
    require_openocr()
    import torch
    from tiny_models import save_tiny_sd21

    from textssr.str.lmdb_convert import convert
    from textssr.synth.settings import SynthSettings
    from textssr.synth.runner import synthesize

    root = tmp_path_factory.mktemp("str")
    save_tiny_sd21(str(root / "model"))
    bench = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    source = {"data_root": str(bench_mini_dir / "benchmark/ic13/images"), "data_list": bench["data_list"][1:4]}
    (root / "anyword.json").write_text(json.dumps(source), encoding="utf-8")
    cfg = SynthSettings.load(os.path.join(REPO, "configs/tiny/synth_cfg.py"), dict(
        source=str(root / "anyword.json"), output_dir=str(root / "synth"), max_regions=6,
        pretrained_vae=str(root / "model/vae"), pretrained_unet=str(root / "model/unet"),
        scheduler_path=str(root / "model/scheduler"), resolution=32, num_inference_steps=1, batch_size=6,
        variants_per_region=3))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = synthesize(cfg)
    finally:
        torch.set_num_threads(threads)
    assert stats["kept"] >= 12
    bad = write_raw_lmdb(root / "bad", [(img, label) for img, label, _ in BAD_SAMPLES])
    convert(str(root / "real"), results=str(real_crops_dir), crops=".")
    convert(str(root / "ic13"), bench=str(bench_mini_dir / "benchmark/ic13"))
    return str(root / "synth" / "lmdb"), bad, str(root / "real")


def command(out, *options):
    return [sys.executable, "train_str.py", "--config", TINY, "--cfg-options", f"output_dir={out}",
            "num_workers=0", "batch_size=8", "eval_batch_size=16", "print_batch_step=1", *options]


def run(cmd, timeout=300):
    """``cmd`` in its own process group: a run past ``timeout`` (a hang) is killed with every process it started
    (torchrun's ranks too), then the test fails."""
    child = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def test_trains_on_synthesized_data_and_evaluates_on_converted_real_crops(str_data, tmp_path, real_crops_dir):
    synth, bad, real = str_data
    out = tmp_path / "run"
    done = run(command(out, f"train_data=[{synth},{bad}]", f"test_data.real={real}", "test_data.tiny_bench=" + real,
                       "epoch_num=2", "samples_per_epoch=24", "augment=SVTRAug"))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "eval" / "real" / "metrics.json").read_text())
    labels = json.loads((real_crops_dir / "labels.json").read_text())
    assert metrics["num_samples"] + sum(metrics["skipped"].values()) == len(labels)
    assert 0.0 <= metrics["acc_exact"] <= metrics["acc"] <= 1.0 and 0.0 <= metrics["norm_edit_dis"] <= 1.0
    assert metrics["checkpoint"]["epoch"] == 2 and metrics["checkpoint"]["global_step"] >= 2 * 3
    assert set(json.loads((out / "metrics.json").read_text())["test_sets"]) == {"real", "tiny_bench"}
    assert "also a training source" not in done.stdout
    report = json.loads((out / "data_report.json").read_text())
    bad_report = next(r for r in report["train"] if r["lmdb"] == bad)
    expected = {}
    for *_, reason in BAD_SAMPLES:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert bad_report["skipped"] == expected and bad_report["samples"] == 2
    log = (out / "train.log").read_text()
    assert "ListedRatioDataSet" in log and "SVTRv2" in log  # OpenOCR's trainer ran our data through its model


def test_a_run_killed_with_sigkill_resumes_from_openocr_latest_checkpoint(str_data, tmp_path):
    synth, _, real = str_data
    out = tmp_path / "killed"
    cmd = command(out, f"train_data=[{synth}]", f"test_data.real={real}", "test_data.tiny_bench=" + real,
                  "epoch_num=4", "samples_per_epoch=64")
    child = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (out / "latest.pth").is_file() and time.time() < deadline and child.poll() is None:
            time.sleep(0.2)
        assert child.poll() is None, "the run ended before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    import torch
    epoch_at_kill = torch.load(out / "latest.pth", weights_only=True)["epoch"]
    assert epoch_at_kill < 4
    done = run(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resume from checkpoint {out / 'latest.pth'} (epoch {epoch_at_kill})" in (out / "train.log").read_text()
    state = torch.load(out / "latest.pth", weights_only=True)
    assert state["epoch"] == 4
    assert json.loads((out / "eval/real/metrics.json").read_text())["checkpoint"]["epoch"] == 4


def test_two_processes_under_torchrun_are_one_run_with_one_metrics_json_that_eval_only_reproduces(str_data, tmp_path):
    """torchrun on the CPU forms a gloo group: each rank trains on its share of every epoch (half the steps), one
    latest.pth, one metrics.json; scoring that latest.pth alone (--eval-only, 1 process) gives the same file."""
    synth, _, real = str_data
    ic13 = os.path.join(os.path.dirname(real), "ic13")
    out = tmp_path / "ddp"
    options = [f"train_data=[{synth},{ic13}]", f"test_data.tiny_bench={real}", "epoch_num=2", "samples_per_epoch=32",
               "batch_size=4", "ddp_timeout=60"]  # a rank left waiting (uneven batches: a hang) stops in a minute
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = run(launch + command(out, *options)[1:], timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("metrics → ") == 1  # rank 0 alone reports
    log = (out / "train.log").read_text()
    assert "rank 0 of 2" in log
    steps = [int(n) for n in __import__("re").findall(r"train dataloader has (\d+) iters", log)]
    # 32 samples in batches of 4: 8+ steps an epoch for one process (16+ in all), about half for each of two
    assert steps and max(steps) <= 6
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["checkpoint"]["global_step"] <= 2 * 6
    os.remove(out / "metrics.json")
    again = run(command(out, *options, "--eval-only"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text()) == trained


def test_eval_only_scores_a_checkpoint_and_touches_nothing_else(str_data, tmp_path):
    synth, _, real = str_data
    out = tmp_path / "trained"
    base = [f"train_data=[{synth}]", f"test_data.tiny_bench={real}", "epoch_num=1", "samples_per_epoch=8"]
    assert run(command(out, *base)).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    other = tmp_path / "scored"
    done = run([sys.executable, "train_str.py", "--config", TINY, "--eval-only", "--checkpoint",
                str(out / "latest.pth"), "--cfg-options", f"output_dir={other}", "num_workers=0",
                f"test_data.tiny_bench={real}"])
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((other / "metrics.json").read_text())
    assert metrics["checkpoint"]["path"] == str(out / "latest.pth") and metrics["checkpoint"]["epoch"] == 1
    assert metrics["test_sets"]["tiny_bench"]["num_samples"] == 10
    assert not any((other / name).exists() for name in ("latest.pth", "train.log", "train_str_settings.json"))
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == before
    assert "tiny_bench" in done.stdout and "arithmetic" not in done.stdout  # one set: no averages


def test_every_optimizer_step_zeroes_the_gradients(str_data, tmp_path):
    """OpenOCR 0.1.5 zeroes them only under amp: in float32 they would add up over the whole run."""
    synth, _, real = str_data
    import torch
    sys.path.insert(0, REPO)
    from textssr.str import openocr_glue as glue
    from textssr.str.settings import StrSettings

    settings = StrSettings.load(os.path.join(REPO, TINY), dict(
        output_dir=str(tmp_path / "g"), train_data=[synth], test_data={"tiny_bench": real}, epoch_num=1,
        samples_per_epoch=8, batch_size=4, num_workers=0, use_amp=False))
    s = glue.check_config(settings)
    lists = glue.build_lists(s, s["train_sources"], "training set")
    oc = glue.translate(s, [glue.list_file(x, s) for x in lists], [], None)
    trainer = glue._trainer_class()(oc, None, training=True)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    assert any(not torch.equal(a, p) for a, p in zip(before, params))  # it trained
    assert all(p.grad is None for p in params)


def test_a_rerun_with_other_settings_is_refused(str_data, tmp_path):
    synth, _, real = str_data
    out = tmp_path / "r"
    (out).mkdir()
    base = [f"train_data=[{synth}]", f"test_data.tiny_bench={real}", "epoch_num=1", "samples_per_epoch=8"]
    assert run(command(out, *base)).returncode == 0
    again = run(command(out, *base[:-1], "samples_per_epoch=16"))
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: output_dir=")
    assert "samples_per_epoch" in again.stderr


@pytest.mark.parametrize("option, message", [
    ("epoch_nums=3", "did you mean 'epoch_num'"),
    ("train_data=[/nonexistent/lmdb]", "no STR LMDB"),
    ("augment=Blur", "augment='Blur'"),
    ("samples_per_epoch=0", "samples_per_epoch=0"),
    ("character_dict=missing.txt", "character_dict='missing.txt'"),
])
def test_config_mistakes_are_one_line_exit_2(option, message, tmp_path, capsys):
    require_openocr()
    sys.path.insert(0, REPO)
    import train_str
    with pytest.raises(SystemExit) as exit_info:
        train_str.main(["--config", os.path.join(REPO, TINY), "--cfg-options", f"output_dir={tmp_path}", option])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_a_ratio_above_one_and_nothing_trainable_are_refused(str_data, tmp_path, capsys):
    synth, bad, real = str_data
    import train_str
    for options, message in ([f"train_data=[{synth}:2]"], "must be in (0, 1]"), \
                            ([f"train_data=[{tmp_path / 'allbad'}]"], "nothing to train on"):
        write_raw_lmdb(tmp_path / "allbad", [(None, "x"), (b"junk", "y"), (b"junk", "")])
        with pytest.raises(SystemExit) as exit_info:
            train_str.main(["--config", os.path.join(REPO, TINY), "--cfg-options", f"output_dir={tmp_path / 'o'}",
                            f"test_data.tiny_bench={real}", *options])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and err[-1].startswith("error:") and message in err[-1], err


def test_the_sampler_keeps_a_bucket_whose_size_is_a_multiple_of_the_batch_size():
    """OpenOCR's RatioSampler drops such a bucket whole (steps lost in training, test samples in evaluation)."""
    require_openocr()
    import numpy as np
    from textssr.str.openocr_glue import import_openocr
    import_openocr()
    from textssr.str.openocr_datasets import ListedRatioSampler

    class Data:  # what RatioSampler reads of a dataset: 32 samples of ratio 2, 5 of ratio 3
        ds_width, seed = True, 1
        wh_ratio = np.array([2.0] * 32 + [3.0] * 5)
        wh_ratio_sort = np.argsort(wh_ratio, kind="stable")

        def __len__(self):
            return 37

    for training in (True, False):
        sampler = ListedRatioSampler(Data(), scales=[[128, 32]], first_bs=16, fix_bs=False, divided_factor=[4, 16],
                                     is_training=training)
        batches = list(iter(sampler))
        seen = sorted({item[2] for batch in batches for item in batch})
        assert seen == list(range(37)) and len(batches) == 3
        assert all(item[3] == 2 and item[:2] == [64, 32] for item in batches[0] + batches[1] if item[2] < 32)


def test_validation_keeps_the_best_checkpoint_and_both_are_scored(str_data, tmp_path):
    """val_data (no test set) every eval_step iterations: best.pth beside latest.pth, each scored on the test sets."""
    synth, _, real = str_data
    ic13 = os.path.join(os.path.dirname(real), "ic13")
    out = tmp_path / "val"
    done = run(command(out, f"train_data=[{synth}]", f"test_data.tiny_bench={real}", f"val_data={ic13}",
                       "eval_step=2", "epoch_num=2", "samples_per_epoch=8", "batch_size=4"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "best.pth").is_file() and (out / "latest.pth").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["best"]
    assert best["checkpoint"]["path"] == str(out / "best.pth")
    assert best["checkpoint"]["validation"]["num_samples"] == 38  # the IC13 subset's crops, not a test set
    assert set(best["test_sets"]) == {"tiny_bench"} and (out / "eval_best/tiny_bench/metrics.json").is_file()
    assert "cur metric" in (out / "train.log").read_text()  # OpenOCR's own evaluation during training ran


def test_images_are_read_as_the_yaml_says_the_checkpoint_was_trained(str_data, tmp_path):
    """svtrv2_rctc.yml: PIL, RGB, bicubic (RatioDataSetTVResize) in training and evaluation alike; a YAML naming
    RatioDataSet: OpenCV (BGR, bilinear)."""
    synth, _, real = str_data
    sys.path.insert(0, REPO)
    from textssr.str import openocr_glue as glue
    from textssr.str.settings import StrSettings

    def translated(**options):
        settings = StrSettings.load(os.path.join(REPO, TINY), dict(
            output_dir=str(tmp_path / "t"), train_data=[synth], test_data={"tiny_bench": real}, **options))
        return glue.translate(glue.check_config(settings), [], [], None)

    oc = translated(augment="SVTRAug")
    for mode, name in (("Train", "ListedRatioDataSetTVResize"), ("Eval", "ListedRatioDataSetTVResizeTest")):
        assert oc[mode]["dataset"]["name"] == name
        assert oc[mode]["dataset"]["transforms"][0] == {"DecodeImagePIL": {"img_mode": "RGB"}}
    assert oc["Train"]["dataset"]["transforms"][1] == {"NumpyAugment": {"op": "SVTRAug"}}
    cv2_yaml = dict(Train=dict(dataset=dict(name="RatioDataSet")), Eval=dict(dataset=dict(name="RatioDataSet")))
    oc = translated(openocr_options=cv2_yaml)
    assert oc["Train"]["dataset"]["name"] == "ListedRatioDataSet"
    assert oc["Eval"]["dataset"]["name"] == "ListedRatioDataSetTest"


def test_a_bad_file_rank_0_finds_stops_every_rank_with_one_line(str_data, tmp_path):
    _, _, real = str_data
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "data.mdb").write_bytes(b"no lmdb" * 100)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = run(launch + command(tmp_path / "o", f"train_data=[{tmp_path / 'fake'}]",
                                f"test_data.tiny_bench={real}")[1:], timeout=200)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    # every rank stops with it; the line is printed once, by rank 0
    assert done.returncode != 0 and len(errors) == 1 and "not a readable LMDB" in errors[0]
    assert "lmdb.Error" not in done.stderr and "ConfigError" not in done.stderr  # no traceback of ours (torchrun's own
    # report of the failed processes follows)
