"""Bad input counted once and never fatal (issue 14): control characters in texts, malformed bench entries,
each bad instance counted once across passes, workers and substitution chains, degenerate crops in eval,
config typos, and checkpoint configs read as data. Real ICDAR 2015 photos."""
import json
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from textssr.config import ConfigError, load_config
from textssr.config.run_config import literal_assignments, read_run_config
from textssr.data import AnyWordDataset, SkipSample, collate

REPO = Path(__file__).resolve().parents[1]
GOOD = [[377, 117], [463, 117], [465, 130], [378, 130]]  # "Genaxis Theatre" in img_1.jpg
R = 32


def ann(text="EXIT", polygon=GOOD, **extra):
    return {"polygon": polygon, "text": text, "language": "Latin", **extra}


def write_json(tmp_path, data_list, name="a.json"):
    (tmp_path / name).write_text(json.dumps({"data_root": ".", "data_list": data_list}, ensure_ascii=False),
                                 encoding="utf-8")
    return str(tmp_path / name)


def open_dataset(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnyWordDataset(path, resolution=R, **kw)


@pytest.fixture
def photos(tmp_path, icdar15_dir):
    shutil.copy(icdar15_dir / "img_1.jpg", tmp_path / "good.jpg")
    data = (icdar15_dir / "img_2.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return tmp_path


# ------------------------------------------------------------------------------------------- texts


@pytest.mark.parametrize("text, reason", [("EX\nIT", "text_control_chars"), ("EX\rIT", "text_control_chars"),
                                          ("EX\x00IT", "text_control_chars"), ("EX\tIT", "text_control_chars"),
                                          ("EX\u2028IT", "text_control_chars"), ("   ", "empty_text"),
                                          (5, "text_invalid")])
def test_texts_that_cannot_be_drawn_are_skipped_and_counted(photos, text, reason):
    """A newline used to crash Pillow's layout (raqm_layout() failed) in infer, synthesis and training."""
    ds = open_dataset(write_json(photos, [{"img_name": "good.jpg", "annotations": [ann(text), ann("Genaxis")]}]))
    assert len(ds) == 1 and ds.skip_counts == {reason: 1} and ds.instance_info(0)["text"] == "Genaxis"
    # a text given at build time (synthesis anagrams, edit.py) is checked the same way, before any rendering
    with pytest.raises(SkipSample) as err:
        ds.build(0, text="A\nB")
    assert err.value.reason == "text_control_chars"
    assert ds.build(0, text="AB")["text"] == "AB"


def test_lmdb_texts_with_control_characters_never_reach_the_renderer(tmp_path, photos):
    """An AnyWord-lmdb built before texts were screened (its stored index holds a newline): the sample is
    substituted in training and counted once."""
    from textssr.data import AnyWordLmdbDataset
    from textssr.data.build_lmdb import build_lmdb
    from textssr.data.lmdb_store import INDEX_KEY, IndexTable
    import lmdb
    json_path = write_json(photos, [{"img_name": "good.jpg", "annotations": [ann("EXIT"), ann("Genaxis")]}])
    build_lmdb([json_path], str(tmp_path / "lmdb"), progress=False)
    env_path = str(tmp_path / "lmdb" / "shard-00000")
    env = lmdb.open(env_path, subdir=True)
    with env.begin(write=True) as txn:  # rewrite the index as an older, unscreened build would have it
        table = IndexTable.decode(txn.get(INDEX_KEY), env_path)
        texts = [table.texts[i] for i in range(len(table.texts))]
        texts[0] = "EX\nIT"
        old = IndexTable.from_lists([table.image_ids[i] for i in range(len(table.image_ids))],
                                    [table.image_names[i] for i in range(len(table.image_names))], table.extents,
                                    table.ann_image, table.ann_index, texts, [None] * len(texts), table.skipped)
        txn.put(INDEX_KEY, old.encode())
    env.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = AnyWordLmdbDataset(str(tmp_path / "lmdb"), resolution=R)
    assert len(ds) == 2
    for _ in range(2):
        samples = [ds[0], ds[1]]
    assert [s["text"] for s in samples] == ["Genaxis", "Genaxis"]
    assert ds.skip_counts == {"text_control_chars": 1} and ds.bad == {0: "text_control_chars"}


# ------------------------------------------------------------------------------------------- malformed entries


def test_malformed_entries_are_counted_by_reason_and_keep_numbering(photos):
    data_list = [{"img_name": "good.jpg", "annotations": [ann("EXIT")]},
                 "not an entry",
                 {"img_name": None, "annotations": [ann("A"), ann("B")]},
                 {"img_name": "good.jpg", "annotations": {"text": "not a list"}},
                 {"img_name": "good.jpg", "annotations": [ann("Genaxis", language=5), ann("Theatre")]}]
    ds = open_dataset(write_json(photos, data_list))
    assert ds.skip_counts == {"entry_malformed": 1, "image_name_invalid": 2, "annotations_malformed": 1,
                              "language_invalid": 1}
    # numbers count the annotations of every entry with an annotation list, in order: EXIT 0, A 1, B 2, Genaxis 3
    assert [ds.instance_info(k)["text"] for k in range(len(ds))] == ["EXIT", "Theatre"]
    assert ds.numbers == [0, 4]
    with pytest.raises(SkipSample, match="data_list\\[1\\]"):
        open_dataset(write_json(photos, data_list), strict=True)


def test_bench_json_with_a_utf8_bom_is_read(photos):
    path = photos / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"data_root": ".", "data_list": [
        {"img_name": "good.jpg", "annotations": [ann("Genaxis")]}]}).encode("utf-8"))
    assert open_dataset(str(path)).instance_info(0)["text"] == "Genaxis"


# ------------------------------------------------------------------------------------------- counted once


def chain_dataset(photos):
    """Two good instances around a chain of 4 bad ones (a truncated photo), then one more good instance."""
    return open_dataset(write_json(photos, [
        {"img_name": "good.jpg", "annotations": [ann("Genaxis")]},
        {"img_name": "truncated.jpg", "annotations": [ann("A"), ann("B"), ann("C"), ann("D")]},
        {"img_name": "good.jpg", "annotations": [ann("Theatre"), ann("EXIT")]}]))


def test_each_bad_instance_is_counted_once_and_never_built_again(photos):
    """4 bad instances in a row: reading every index twice used to count 7, then 14."""
    ds = chain_dataset(photos)
    built = Counter()
    build = ds.build

    def counting_build(index, *args, **kwargs):
        built[index] += 1
        return build(index, *args, **kwargs)

    ds.build = counting_build
    first = [ds[i] for i in range(len(ds))]
    assert ds.skip_counts == {"image_unreadable": 4} and sorted(ds.bad) == [1, 2, 3, 4]
    assert first[1]["skipped"] == [(1, "image_unreadable"), (2, "image_unreadable"), (3, "image_unreadable"),
                                   (4, "image_unreadable")] and first[1]["text"] == "Theatre"
    assert "skipped" not in first[2]  # the chain was met already: nothing new to report
    second = [ds[i] for i in range(len(ds))]
    assert ds.skip_counts == {"image_unreadable": 4}
    assert all(built[i] == 1 for i in (1, 2, 3, 4))  # known-bad: not decoded again
    assert [s["text"] for s in second] == [s["text"] for s in first]


def test_workers_report_instances_that_the_training_counter_counts_once(photos):
    """Two DataLoader workers and two epochs: every worker meets the chain, the counter counts it once and tells
    the main process's dataset, so the next epoch's workers do not build it again."""
    from textssr.train.skip_counter import SkipCounter
    ds = chain_dataset(photos)
    counter = SkipCounter(ds)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate, shuffle=False)
    reported = []
    for _ in range(2):
        for batch in loader:
            reported.append(dict(batch["skipped_instances"]))
            counter.add(batch)
    assert counter.instances == {1: "image_unreadable", 2: "image_unreadable", 3: "image_unreadable",
                                 4: "image_unreadable"}
    assert ds.skip_counts == {"image_unreadable": 4}  # this process's dataset learned them from the batches
    epoch2 = reported[len(reported) // 2:]
    assert all(not found for found in epoch2)  # the second epoch's workers knew them: nothing new


# ------------------------------------------------------------------------------------------- eval


@pytest.mark.timeout(120)
def test_eval_skips_degenerate_crops_instead_of_hanging(tmp_path, real_crops_dir):
    """A 3000 x 1 crop used to take minutes of OCR (resized to 144,000 pixels wide)."""
    from textssr.eval import Recognizer, evaluate_results
    labels = json.loads((real_crops_dir / "labels.json").read_text(encoding="utf-8"))
    name, text = next(iter(labels.items()))
    shutil.copy(real_crops_dir / name, tmp_path / name)
    cv2.imwrite(str(tmp_path / "line.png"), np.full((1, 3000, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "column.png"), np.full((3000, 1, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "sliver.png"), np.full((2, 400, 3), 128, np.uint8))
    (tmp_path / "labels.json").write_text(json.dumps({name: text, "line.png": "A", "column.png": "B",
                                                      "sliver.png": "C"}))
    metrics = evaluate_results(tmp_path, Recognizer(batch_size=4), progress=False)
    assert metrics["num"] == 1 and metrics["skipped"] == {"crop_degenerate": 3}
    reads = Recognizer(batch_size=4).recognize([np.full((1, 3000, 3), 128, np.uint8)])
    assert reads == [("", 0.0)]  # the screening of synthesis rejects it as no_text without running the model


# ------------------------------------------------------------------------------------------- configs


def test_misspelled_keys_are_refused_with_the_closest_known_one(tmp_path):
    schema = str(REPO / "configs/infer_cfg.py")
    with pytest.raises(ConfigError, match="unknown config key 'num_inference_step' in --cfg-options "
                                          "\\(did you mean 'num_inference_steps'\\?\\)"):
        load_config(str(REPO / "configs/tiny/infer_cfg.py"), {"num_inference_step": 4}, schema=schema)
    user = tmp_path / "mine.py"
    user.write_text("_base_ = ['%s']\nbatch_sise = 4\n" % (REPO / "configs/tiny/infer_cfg.py"))
    with pytest.raises(ConfigError, match="unknown config key 'batch_sise' in .*mine.py \\(did you mean "
                                          "'batch_size'\\?\\)"):
        load_config(str(user), schema=schema)
    for config, script_schema in (("configs/tiny/train_vae_cfg.py", "configs/train_vae_cfg.py"),
                                  ("configs/tiny/train_diff_step2_cfg.py", "configs/train_diff_step1_cfg.py"),
                                  ("configs/train_diff_step2_cfg.py", "configs/train_diff_step1_cfg.py"),
                                  ("configs/tiny/synth_cfg.py", "configs/synth_cfg.py")):
        load_config(str(REPO / config), schema=str(REPO / script_schema))  # the shipped configs all pass
    # nested keys of a None dict become a dict, and its own checks name the bad value
    cfg = load_config(str(REPO / "configs/tiny/synth_cfg.py"), {"screening.match": "ned"},
                      schema=str(REPO / "configs/synth_cfg.py"))
    assert cfg.screening == {"match": "ned"}


@pytest.mark.parametrize("script, args, message", [
    ("infer.py", ["--config", "configs/tiny/infer_cfg.py", "--cfg-options", "num_inference_step=4"],
     "did you mean 'num_inference_steps'"),
    ("train_diff.py", ["--config", "configs/tiny/train_diff_step1_cfg.py", "--cfg-options", "learning_rat=1e-2"],
     "did you mean 'learning_rate'"),
])
def test_typos_on_the_command_line_are_one_line_and_exit_2(script, args, message):
    run = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and message in run.stderr


def test_checkpoint_configs_are_read_as_data_never_executed(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "config.py").write_text(
        f"import os\nos.system('touch {marker}')\nresolution = 64\nseed = -1\nunet_arch = dict(a=[1, 2], b=None)\n"
        f"hack = open('{marker}', 'w')\nlr = 1e-3\n")
    assert read_run_config(str(tmp_path)) == {"resolution": 64, "seed": -1, "unet_arch": {"a": [1, 2], "b": None},
                                              "lr": 1e-3}
    assert not marker.exists()
    (tmp_path / "train_config.json").write_text(json.dumps({"resolution": 32}))
    assert read_run_config(str(tmp_path)) == {"resolution": 32}  # the JSON, when there is one
    assert literal_assignments("x = __import__('os').getcwd()\ny = (1, 'a')\n") == {"y": (1, "a")}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """A 4-image tiny corpus (JSON, images and LMDBs) made by the generator the demo uses, and tiny random models in
    ``model/`` (vae/, unet/, scheduler/)."""
    from tiny_models import save_tiny_sd21
    from textssr.data.tiny_data import generate
    root = tmp_path_factory.mktemp("small_corpus")
    generate(root, num_images=4, bench_images=2, seed=5, progress=False)
    save_tiny_sd21(str(root / "model"))
    return root


@pytest.mark.parametrize("script, config, option, message", [
    ("synthesize.py", "configs/tiny/synth_cfg.py", "screening.match=fuzzy", "screening.match='fuzzy'; choose one of"),
    ("synthesize.py", "configs/tiny/synth_cfg.py", "seed=-5", "seed=-5: must be >= 0"),
    ("synthesize.py", "configs/tiny/synth_cfg.py", "output_dir=README.md", "output_dir=README.md: is a file"),
    # these three used to be a traceback after the whole run, and a RecursionError in the option parser
    ("synthesize.py", "configs/tiny/synth_cfg.py", "contact_sheet_size=abc", "contact_sheet_size='abc': must be"),
    ("synthesize.py", "configs/tiny/synth_cfg.py", "screening=dict(match='exact',min_ned=2)",
     "screening.min_ned=2: must be a number in [0, 1]"),
    ("synthesize.py", "configs/tiny/synth_cfg.py", "language=123", "language=123: must be a language name"),
    ("train_vae.py", "configs/tiny/train_vae_cfg.py", "output_dir=README.md", "output_dir=README.md: is a file"),
    ("train_vae.py", "configs/tiny/train_vae_cfg.py", "train_batch_size=abc", "train_batch_size='abc': must be"),
    ("train_diff.py", "configs/tiny/train_diff_step1_cfg.py", "font_path=README.md", "is not a usable font file"),
])
def test_ordinary_mistakes_of_the_other_scripts_are_one_line(script, config, option, message, small_corpus):
    # data and model paths point at a real corpus and real models, so that the mistake named is the only one (a fresh
    # clone has neither data/tiny nor model/tiny)
    lmdb, model = small_corpus / "AnyWord-lmdb" / "step1_lmdb", small_corpus / "model"
    data = {"synthesize.py": [f"source={small_corpus / 'train.json'}", f"pretrained_vae={model / 'vae'}",
                              f"pretrained_unet={model / 'unet'}", f"scheduler_path={model}", "resolution=32",
                              "ttf_size=64", "max_len=25"],
            "train_vae.py": [f"lmdb_path={lmdb}"],
            "train_diff.py": [f"lmdb_path={lmdb}", f"pretrained_vae={model / 'vae'}"]}[script]
    run = subprocess.run([sys.executable, script, "--config", config, "--cfg-options", *data, option], cwd=REPO,
                         capture_output=True, text=True)
    lines = [line for line in run.stderr.strip().splitlines() if "Warning" not in line and not line.startswith(" ")]
    assert run.returncode == 2 and lines == [lines[-1]] and message in lines[-1], run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def test_eval_out_naming_a_folder_is_refused_before_any_ocr(tmp_path, real_crops_dir):
    run = subprocess.run([sys.executable, "eval.py", "--results", str(real_crops_dir), "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and "is a folder; give a file path" in run.stderr and "Traceback" not in run.stderr
    assert not list(tmp_path.iterdir())
