"""Data lists (textssr.str.data_list): every bad sample of an STR LMDB skipped and counted by its reason."""
import os
import time

from str_fixtures import BAD_SAMPLES, word_png, write_raw_lmdb

from textssr.str import data_list as dl

CHARSET = "".join(chr(c) for c in range(33, 127))  # OpenOCR's EN_symbol_dict: printable ASCII without space


def scan(path, **kw):
    space = kw.get("use_space_char", False)
    return dl.scan_lmdb(str(path), CHARSET + (" " if space else ""), kw.get("max_text_length", 25), space)


def test_each_bad_sample_is_skipped_and_counted_by_reason(tmp_path):
    path = write_raw_lmdb(tmp_path / "bad", [(img, label) for img, label, _ in BAD_SAMPLES])
    result = scan(path)
    good = [i for i, (*_, reason) in enumerate(BAD_SAMPLES, 1) if reason is None]
    assert result.indices.tolist() == good
    expected = {}
    for *_, reason in BAD_SAMPLES:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert result.skipped == expected
    assert result.wh.tolist() == [[64, 24], [64, 24]]
    assert result.notes == {}


def test_an_lmdb_without_num_samples_is_read_by_its_label_keys_and_says_so(tmp_path):
    samples = [(word_png("a"), "a"), (word_png("b"), "b"), (word_png("c"), "")]
    for stored in (None, b"not a number"):
        path = write_raw_lmdb(tmp_path / f"n{stored is None}", samples, num_samples=stored)
        result = scan(path)
        assert result.indices.tolist() == [1, 2]
        assert result.skipped == {"empty_label": 1}
        assert result.notes == {dl.NUM_SAMPLES_MISSING: 1}


def test_num_samples_larger_than_the_records_counts_the_missing_ones(tmp_path):
    path = write_raw_lmdb(tmp_path / "short", [(word_png("a"), "a")], num_samples=b"3")
    result = scan(path)
    assert result.indices.tolist() == [1] and result.skipped == {"label_missing": 2}


def test_space_class_and_length_follow_the_recogniser(tmp_path):
    path = write_raw_lmdb(tmp_path / "sp", [(word_png("a b"), "a b"), (word_png("x"), "abcd")])
    assert scan(path, use_space_char=True).indices.tolist() == [1, 2]
    assert scan(path, max_text_length=3).skipped == {"too_long": 1}
    # without a space class spaces are dropped, so "a b" is 2 characters long
    assert scan(path, max_text_length=2).indices.tolist() == [1]


def test_the_list_is_cached_and_rescanned_when_the_lmdb_changes(tmp_path):
    path = write_raw_lmdb(tmp_path / "c", [(word_png("a"), "a")])
    cache = str(tmp_path / "cache")
    first = dl.data_list(path, CHARSET, 25, False, cache)
    assert os.path.isfile(dl.list_path(path, cache))
    assert dl.cached_list(path, CHARSET, 25, False, cache).indices.tolist() == [1]
    assert dl.cached_list(path, CHARSET + "é", 25, False, cache) is None  # other checks: not the same list
    time.sleep(0.01)
    write_raw_lmdb(tmp_path / "c", [(word_png("a"), "a"), (word_png("b"), "b")])
    again = dl.data_list(path, CHARSET, 25, False, cache)
    assert len(first) == 1 and len(again) == 2
