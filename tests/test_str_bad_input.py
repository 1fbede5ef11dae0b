"""Bad input on the recogniser side (train_str.py): a config mistake is one line `error: ...`, exit status 2, before
any data is read or any setting written; bad data files are skipped and counted, or named in one line."""
import fcntl
import json
import os
import sys

import pytest
from str_fixtures import require_openocr, word_png, write_raw_lmdb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs/str/tiny/train_str_cfg.py")


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    require_openocr()
    root = tmp_path_factory.mktemp("bad")
    train = write_raw_lmdb(root / "train", [(word_png(w), w) for w in ["ab", "cd", "ef", "gh"] * 4])
    test = write_raw_lmdb(root / "test", [(word_png(w), w) for w in ["ab", "cd"]])
    return train, test


def main(*options, argv=()):
    sys.path.insert(0, REPO)
    import train_str
    train_str.main(["--config", TINY, *argv, "--cfg-options", "num_workers=0", *options])


def one_line_exit_2(capsys, *options, argv=()):
    with pytest.raises(SystemExit) as exit_info:
        main(*options, argv=argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.mark.parametrize("option, message", [
    ("openocr_options.Optimizer.lrr=0.1", "lrr"),
    ("openocr_options.Global.epoch_num=abc", "set that instead"),
    ("openocr_options.Architecture=5", "must be a dict"),
    ("openocr_options.Foo.bar=1", "openocr_options.Foo"),
    ("openocr_options.Train.loader.num_workerz=1", "no such key"),
    ("openocr_options.Optimizer.weight_decay=abc", "must be like"),
    ("openocr_config=configs/rec/svtrv2/svtrv2_smtr_gtc_rctc.yml", "does not run"),
    ("openocr_config=configs/rec/svtrv2/svtrv2_ch.yml", "does not run"),
    ("augment=PARSeqAug", "augment"),
    ("output_dir=/", "filesystem root"),
    ("test_data.../up=", "plain name"),
])
def test_config_mistakes_are_one_line_before_anything_is_written(lmdbs, tmp_path, capsys, option, message):
    if option == "augment=PARSeqAug":
        import importlib.util
        if importlib.util.find_spec("imgaug") is not None:
            pytest.skip("imgaug is installed here: PARSeqAug works")
    train, test = lmdbs
    if option.startswith("test_data.../up"):
        option += test
    out = tmp_path / "out"
    line = one_line_exit_2(capsys, f"output_dir={out}", f"train_data=[{train}]", f"test_data.tiny_bench={test}",
                           option)
    assert message in line
    assert not out.exists()


def test_files_that_are_no_config_or_character_list_are_one_line(lmdbs, tmp_path, capsys):
    train, test = lmdbs
    (tmp_path / "cfg.txt").write_text("Global: {}\n")
    (tmp_path / "chars.txt").write_bytes(b"\xff\xfe\x00\x81binary")
    (tmp_path / "bad.yml").write_text("Global: [unclosed\n")
    base = [f"output_dir={tmp_path / 'o'}", f"train_data=[{train}]", f"test_data.tiny_bench={test}"]
    assert "not an OpenOCR YAML" in one_line_exit_2(capsys, *base, f"openocr_config={tmp_path / 'cfg.txt'}")
    assert "unreadable YAML" in one_line_exit_2(capsys, *base, f"openocr_config={tmp_path / 'bad.yml'}")
    assert "not a UTF-8 text file" in one_line_exit_2(capsys, *base, f"character_dict={tmp_path / 'chars.txt'}")


def test_a_data_mdb_that_is_no_lmdb_is_one_line(lmdbs, tmp_path, capsys):
    _, test = lmdbs
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "data.mdb").write_bytes(b"not an lmdb at all" * 100)
    line = one_line_exit_2(capsys, f"output_dir={tmp_path / 'o'}", f"train_data=[{tmp_path / 'fake'}]",
                           f"test_data.tiny_bench={test}")
    assert "is not a readable LMDB" in line and "data.mdb" in line


def test_a_second_run_on_the_same_output_dir_is_refused_while_the_first_runs(lmdbs, tmp_path, capsys):
    train, test = lmdbs
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".train_str.lock", "a+") as held:  # what a running train_str.py holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        line = one_line_exit_2(capsys, f"output_dir={out}", f"train_data=[{train}]", f"test_data.tiny_bench={test}")
    assert "in use by another train_str.py (pid 4242)" in line


def test_a_truncated_latest_checkpoint_is_one_line_naming_it(lmdbs, tmp_path, capsys):
    train, test = lmdbs
    out = tmp_path / "r"
    base = [f"output_dir={out}", f"train_data=[{train}]", f"test_data.tiny_bench={test}", "epoch_num=2",
            "samples_per_epoch=8", "batch_size=4"]
    main(*base, "epoch_num=1")  # a settings change of epoch_num alone is refused: train the same settings twice
    capsys.readouterr()
    (out / "train_str_settings.json").unlink()
    data = (out / "latest.pth").read_bytes()
    (out / "latest.pth").write_bytes(data[: len(data) // 3])
    line = one_line_exit_2(capsys, *base)
    assert f"checkpoint {out / 'latest.pth'} cannot be used" in line


def test_a_truncated_data_list_is_scanned_afresh_and_no_test_set_says_no_evaluation_ran(lmdbs, tmp_path, capsys):
    train, test = lmdbs
    out = tmp_path / "r"
    base = [f"output_dir={out}", f"train_data=[{train},{train}]", "epoch_num=1", "samples_per_epoch=8",
            "batch_size=4", "test_data=dict()"]
    main(*base)
    first = capsys.readouterr().out
    assert "train_data names" in first and "twice" in first  # the same source twice is warned about
    assert "no evaluation ran" in first
    assert json.loads((out / "metrics.json").read_text())["note"].startswith("no test set")
    for lst in (out / "data_lists").iterdir():
        lst.write_bytes(lst.read_bytes()[:40])
    (out / "latest.pth").unlink()
    main(*base)
    assert "train " in capsys.readouterr().out
    report = json.loads((out / "data_report.json").read_text())
    assert report["train"][0]["samples"] == 16


def test_a_test_set_that_is_also_a_training_source_is_warned_about(lmdbs, tmp_path, capsys):
    train, _ = lmdbs
    main(f"output_dir={tmp_path / 'o'}", f"train_data=[{train}]", f"test_data.tiny_bench={train}", "epoch_num=1",
         "samples_per_epoch=8", "batch_size=4")
    assert "also a training source" in capsys.readouterr().out


def test_a_num_samples_beyond_the_lmdb_is_bounded_by_its_entries(tmp_path):
    from textssr.str.data_list import scan_lmdb
    path = write_raw_lmdb(tmp_path / "l", [(word_png("ab"), "ab")] * 20, num_samples=b"999999999999")
    calls = []
    result = scan_lmdb(path, "abcdefghijklmnopqrstuvwxyz", 25, progress=lambda done, total: calls.append(total))
    assert len(result) == 20 and max(calls) <= 41  # entries: 20 images + 20 labels + num-samples


def test_the_unionst_recipe_builds_its_model_and_says_it_needs_cuda_on_the_cpu(lmdbs, tmp_path, capsys):
    """configs/str/unionst_svtrv2_nrtr.py: SVTRv2 + OpenOCR's NRTR decoder (built once); on the CPU, one line."""
    train, test = lmdbs
    from textssr.str import openocr_glue as glue
    from textssr.str.settings import StrSettings

    settings = StrSettings.load(os.path.join(REPO, "configs/str/unionst_svtrv2_nrtr.py"),
                                dict(train_data=[train], output_dir=str(tmp_path / "u")))
    assert settings.epoch_num == 40 and settings.batch_size == 256
    s = settings.to_dict()
    s.update(openocr_config=glue.openocr_file(s["openocr_config"], glue.openocr_root(), "openocr_config"),
             character_dict=glue.openocr_file(s["character_dict"], glue.openocr_root(), "character_dict"),
             train_sources=[{"path": train, "ratio": 1.0}], val_sources=[])
    oc = glue.translate(s, [], [], None)
    assert oc["Architecture"]["Encoder"]["name"] == "SVTRv2LNConvTwo33" and oc["Architecture"]["Decoder"]["name"] \
        == "NRTRDecoder"
    glue.build_once(oc)
    line = one_line_exit_2(capsys, f"output_dir={tmp_path / 'o'}", f"train_data=[{train}]",
                           f"test_data.tiny_bench={test}", "openocr_config=configs/rec/nrtr/svtrv2_nrtr.yml",
                           "device=cpu")
    assert "CUDA only" in line


def test_the_linear_rule_scales_the_learning_rate_with_the_global_batch():
    from textssr.str.openocr_glue import learning_rate
    s = dict(learning_rate=0.00065, lr_scaling="none", batch_size=128, lr_reference_batch=1024)
    assert learning_rate(s) == 0.00065  # OpenOCR's behaviour: the value as it is, whatever the GPU count
    assert learning_rate(dict(s, lr_scaling="linear")) == pytest.approx(0.00065 * 128 / 1024)
