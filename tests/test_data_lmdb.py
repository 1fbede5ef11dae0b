"""AnyWord JSON → AnyWord-lmdb: identical samples, stored index, plain folders, resume, bad input."""
import json
import os
import shutil
import warnings

import lmdb
import pytest
import torch

from textssr.data.errors import DataError
from textssr.data import AnyWordDataset, AnyWordLmdbDataset
from textssr.data.build_lmdb import build_lmdb, main as build_main
from textssr.data.icdar15 import convert_icdar15
from textssr.data.lmdb_store import INDEX_KEY


def quiet(cls, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(*args, **kw)


@pytest.fixture(scope="module")
def sources(icdar15_dir, bench_mini_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lmdb_src")
    convert_icdar15(str(icdar15_dir), None, str(tmp / "ic15.json"))
    return [str(tmp / "ic15.json"), str(bench_mini_dir / "benchmark/shopsign/test.json")]


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("lmdb") / "AnyWord-lmdb"
    summary = build_lmdb(sources, str(out), shard_size=7, progress=False)
    return out, summary


def test_json_to_lmdb_gives_identical_samples(sources, built):
    out, summary = built
    a, b = quiet(AnyWordDataset, sources, seed=9), quiet(AnyWordLmdbDataset, str(out), seed=9)
    assert len(a) == len(b) == summary["samples"] == 21 + 70
    assert summary["shards"] == 4 and all(b.indexed)
    for i in range(len(a)):
        assert a.instance_info(i) == b.instance_info(i)
        x, y = a[i], b[i]
        assert x["text"] == y["text"]
        for key in ("image", "mask", "masked_image", "glyph", "ttf_img"):
            assert torch.equal(x[key], y[key]), (i, key)


def test_plain_anyword_lmdb_without_index_still_loads(built, tmp_path):
    out, _ = built
    plain = tmp_path / "plain"
    shutil.copytree(out / "shard-00001", plain)
    env = lmdb.open(str(plain), map_size=1 << 30)
    with env.begin(write=True) as txn:
        txn.delete(INDEX_KEY)
    env.close()
    indexed, scanned = quiet(AnyWordLmdbDataset, str(out / "shard-00001")), quiet(AnyWordLmdbDataset, str(plain))
    assert scanned.indexed == [False] and len(scanned) == len(indexed) > 0
    for i in range(len(scanned)):
        assert scanned.instance_info(i)["text"] == indexed.instance_info(i)["text"]
        assert torch.equal(scanned[i]["image"], indexed[i]["image"])


def test_build_resumes_at_the_first_unfinished_shard(sources, tmp_path):
    out = tmp_path / "lm"
    first = build_lmdb(sources, str(out), shard_size=7, progress=False)
    env = lmdb.open(str(out / "shard-00002"), map_size=1 << 30)  # as if interrupted inside shard 2
    with env.begin(write=True) as txn:
        txn.delete(INDEX_KEY)
    env.close()
    again = build_lmdb(sources, str(out), shard_size=7, progress=False)
    assert again["resumed_shards"] == 3 and again["samples"] == first["samples"]
    with pytest.raises(DataError, match="other arguments"):
        build_lmdb(sources[:1], str(out), shard_size=7, progress=False)


def test_resume_rebuilds_exactly_the_shards_whose_inputs_changed(icdar15_dir, tmp_path):
    """A resume used to reuse an old shard after the JSON's texts were edited (build_info.json only holds the
    arguments): each finished shard now records a fingerprint of its images' names, annotations and sizes."""
    for i in (1, 2, 3):
        shutil.copy(icdar15_dir / f"img_{i}.jpg", tmp_path / f"{i}.jpg")
    good = {"polygon": [[377, 117], [463, 117], [465, 130], [378, 130]], "text": "Genaxis", "language": "Latin"}
    data = {"data_root": ".", "data_list": [{"img_name": f"{i}.jpg", "annotations": [dict(good, text=f"W{i}")]}
                                            for i in (1, 2, 3)]}
    path, out = tmp_path / "a.json", tmp_path / "lm"
    path.write_text(json.dumps(data))
    assert build_lmdb([str(path)], str(out), shard_size=1, progress=False)["rebuilt_shards"] == 0
    data["data_list"][1]["annotations"][0]["text"] = "EDITED"
    path.write_text(json.dumps(data))
    again = build_lmdb([str(path)], str(out), shard_size=1, progress=False)
    assert again["resumed_shards"] == 2 and again["rebuilt_shards"] == 1
    assert [quiet(AnyWordLmdbDataset, str(out)).instance_info(i)["text"] for i in range(3)] == ["W1", "EDITED", "W3"]
    shutil.copy(icdar15_dir / "img_4.jpg", tmp_path / "3.jpg")  # an image replaced by another photo
    assert build_lmdb([str(path)], str(out), shard_size=1, progress=False)["rebuilt_shards"] == 1
    from textssr.data.build_lmdb import shard_done
    assert len(shard_done(str(out / "shard-00000")).source) == 64  # a SHA-256 hex digest


def test_build_rejects_an_output_that_cannot_be_a_folder(sources, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert build_main(["--json", sources[0], "--out", str(tmp_path / "file"), "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


def test_build_skips_bad_input_and_reports(icdar15_dir, tmp_path, capsys):
    shutil.copy(icdar15_dir / "img_1.jpg", tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    good = {"polygon": [[377, 117], [463, 117], [465, 130], [378, 130]], "text": "Genaxis", "language": "Latin"}
    data = {"data_root": ".", "data_list": [
        {"img_name": "good.jpg", "annotations": [good, dict(good, text=""), dict(good, polygon=[[0, 0]]),
                                                 dict(good, polygon=[[3000, 10], [3100, 10], [3100, 50]])]},
        {"img_name": "broken.jpg", "annotations": [good]},
        {"img_name": "absent.jpg", "annotations": [good, good]},
        {"img_name": "good.jpg", "annotations": [dict(good, language=5), dict(good, text="A\nB")]},
        "junk", {"img_name": None, "annotations": [good]}, {"img_name": "good.jpg", "annotations": 7}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    assert build_main(["--json", str(tmp_path / "a.json"), "--out", str(tmp_path / "lm"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for line in ("1 empty_text", "1 polygon_degenerate", "1 polygon_outside", "1 image_unreadable",
                 "2 image_missing", "1 language_invalid", "1 text_control_chars", "1 entry_malformed",
                 "1 image_name_invalid", "1 annotations_malformed"):
        assert line in out
    ds = quiet(AnyWordLmdbDataset, str(tmp_path / "lm"))
    assert len(ds) == 1 and ds.skip_counts["image_missing"] == 2 and ds[0]["text"] == "Genaxis"


def test_lmdb_language_filter_and_missing_glyphs_at_open(tmp_path, icdar15_dir):
    shutil.copy(icdar15_dir / "img_1.jpg", tmp_path / "good.jpg")
    poly = [[377, 117], [463, 117], [465, 130], [378, 130]]
    anns = [{"polygon": poly, "text": "EXIT", "language": "Latin"},
            {"polygon": poly, "text": "中文", "language": "Chinese"},
            {"polygon": poly, "text": "A\U0001F600", "language": "Latin"}]
    (tmp_path / "a.json").write_text(json.dumps({"data_root": ".", "data_list": [
        {"img_name": "good.jpg", "annotations": anns}]}))
    build_lmdb([str(tmp_path / "a.json")], str(tmp_path / "lm"), progress=False)
    ds = quiet(AnyWordLmdbDataset, str(tmp_path / "lm"))
    assert [ds.instance_info(i)["text"] for i in range(len(ds))] == ["EXIT", "中文"]
    assert ds.skip_counts["missing_glyph"] == 1
    latin = quiet(AnyWordLmdbDataset, str(tmp_path / "lm"), language="Latin")
    assert [latin.instance_info(i)["text"] for i in range(len(latin))] == ["EXIT"]
    assert len(quiet(AnyWordLmdbDataset, str(tmp_path / "lm"), vae_mode=True)) == 3


def test_missing_lmdb_is_a_config_error_with_the_fix(tmp_path):
    with pytest.raises(DataError, match="build_lmdb"):
        AnyWordLmdbDataset(str(tmp_path / "nothing"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match="data.mdb"):
        AnyWordLmdbDataset(str(tmp_path / "empty"))


def test_lmdb_dataset_in_dataloader_workers(built):
    out, _ = built
    ds = quiet(AnyWordLmdbDataset, str(out), seed=3)
    expected = torch.stack([ds[i]["mask"] for i in range(6)])
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(6)), batch_size=3, num_workers=2)
    assert torch.equal(torch.cat([b["mask"] for b in loader]), expected)


def test_window_decoding_gives_the_samples_of_whole_image_decoding(sources, built, monkeypatch, jpeg_window):
    """Shuffled reading with an empty image cache decodes only crop windows (extents stored in the LMDB index,
    learned by the JSON dataset on its first pass); the samples are those of whole-image decoding."""
    import numpy as np

    import textssr.data.image_io as anyword  # where the decoders are looked up

    calls = {"window": 0}
    real = anyword.decode_window

    def counting(*args):
        crop = real(*args)
        calls["window"] += crop is not None
        return crop

    monkeypatch.setattr(anyword, "decode_window", counting)
    out, _ = built
    for make in (lambda **kw: quiet(AnyWordDataset, sources, seed=4, **kw),
                 lambda **kw: quiet(AnyWordLmdbDataset, str(out), seed=4, **kw)):
        for vae_mode in (False, True):
            fast, whole = make(vae_mode=vae_mode), make(vae_mode=vae_mode)
            whole.images.window_decode = False
            for i in range(len(fast)):  # the JSON dataset learns every image's extent on this pass
                fast[i]
            calls["window"] = 0
            rng = np.random.default_rng(0)
            order = rng.permutation(len(fast)).tolist()
            while any(b == a + 1 for a, b in zip(order, order[1:])):  # shuffled: no index right after its own
                order = rng.permutation(len(fast)).tolist()
            for i in order:
                fast.images.cache.clear()
                x, y = fast[i], whole[i]
                for key in x:
                    assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key], (i, key)
            assert calls["window"] == len(order), calls


def test_two_datasets_read_one_lmdb_in_one_process(sources, built):
    """py-lmdb refuses to open an environment twice in a process; datasets share one reader per path — and each
    still reads its own samples: those the JSON and image files give (the first and last shard checked)."""
    out, _ = built
    json_ds = quiet(AnyWordDataset, sources, seed=1)
    json_vae = quiet(AnyWordDataset, sources, seed=1, vae_mode=True)
    a, b = quiet(AnyWordLmdbDataset, str(out), seed=1), quiet(AnyWordLmdbDataset, str(out), seed=1, vae_mode=True)
    assert len(a) == len(json_ds) and len(b) == len(json_vae)
    last = len(a) - 1
    for i in (0, last):
        assert torch.equal(b[i]["image"], json_vae[i]["image"]), i
        for key in ("image", "mask", "glyph"):
            assert torch.equal(a[i][key], json_ds[i][key]), (i, key)
    del b
    assert torch.equal(quiet(AnyWordLmdbDataset, str(out), seed=1)[last]["mask"], json_ds[last]["mask"])


def test_sequential_reading_decodes_a_busy_image_whole_once(icdar15_dir, tmp_path, monkeypatch, jpeg_window):
    import textssr.data.image_io as anyword  # where the decoders are looked up

    word = {"polygon": [[377, 117], [463, 117], [465, 130], [378, 130]], "text": "Genaxis", "language": "Latin"}
    data = {"data_root": str(icdar15_dir), "data_list": [{"img_name": "img_1.jpg", "annotations": [word] * 5},
                                                          {"img_name": "img_2.jpg", "annotations": [word]}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    ds = quiet(AnyWordDataset, str(tmp_path / "a.json"))
    for i in range(len(ds)):  # learns both extents
        ds[i]
    calls = {"window": 0, "whole": 0}
    real_window, real_whole = anyword.decode_window, anyword.decode_image

    def window(*args):
        calls["window"] += 1
        return real_window(*args)

    def whole(*args):
        calls["whole"] += 1
        return real_whole(*args)

    monkeypatch.setattr(anyword, "decode_window", window)
    monkeypatch.setattr(anyword, "decode_image", whole)
    ds.images.cache.clear()
    for i in range(len(ds)):
        ds[i]
    # index 0 follows index 5 (not sequential): its window; index 1 starts a run of 4 more of img_1: whole,
    # cached for 2-4; index 5 (img_2, nothing after it): its window
    assert calls == {"window": 2, "whole": 1}
    ds[5]  # the same sample again (synthesis draws variants of a region): img_2 whole, then cached
    ds[5]
    assert calls == {"window": 2, "whole": 2}
    ds.images.cache.clear()
    for i in (0, 2, 4):  # a rank's share at stride 2 (img_1 at 0, 2, 4): its window, as 2 more do not follow
        ds[i]
    assert calls == {"window": 5, "whole": 2}


def test_rebuilding_an_open_lmdb_in_the_same_process(sources, tmp_path):
    out = str(tmp_path / "AnyWord-lmdb")
    build_lmdb(sources[:1], out, shard_size=7, progress=False)
    ds = quiet(AnyWordLmdbDataset, out, seed=2)
    first = ds[0]
    build_lmdb(sources[:1], out, shard_size=7, progress=False)  # resumes: every shard is finished
    ds.images.cache.clear()
    assert torch.equal(ds[0]["image"], first["image"])
