"""The STR benchmark protocol (textssr.str.protocol, data_list's test labels): one test set per LMDB, OpenOCR's two
averages, the presets' folders and counts, and test labels normalised as OpenOCR's test sets normalise them."""
import pytest
from str_fixtures import word_png, write_raw_lmdb

from textssr.config import ConfigError
from textssr.str import data_list as dl
from textssr.str import protocol

CHARSET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?.-"


def lmdb(path, labels):
    return write_raw_lmdb(path, [(word_png(), label) for label in labels])


def test_a_folder_of_lmdbs_is_one_test_set_per_lmdb_with_arithmetic_and_weighted_averages(tmp_path):
    lmdb(tmp_path / "bench/small", ["ab"])
    lmdb(tmp_path / "bench/big", ["ab", "cd", "ef"])
    lmdb(tmp_path / "alone", ["x"])
    sets = protocol.resolve_test_sets({"bench": str(tmp_path / "bench"), "alone": str(tmp_path / "alone")}, [], "")
    assert list(sets) == ["bench/big", "bench/small", "alone"]
    assert {n: t["group"] for n, t in sets.items()} == {"bench/big": "bench", "bench/small": "bench",
                                                       "alone": protocol.SINGLE}
    reports = {"bench/big": dict(num_samples=3, acc=1 / 3, acc_exact=0.0, norm_edit_dis=0.5),
               "bench/small": dict(num_samples=1, acc=1.0, acc_exact=1.0, norm_edit_dis=1.0),
               "alone": dict(num_samples=1, acc=0.0, acc_exact=0.0, norm_edit_dis=0.0)}
    result = protocol.summary(sets, reports)
    bench = result["groups"]["bench"]
    assert bench["arithmetic_avg"]["acc"] == pytest.approx(2 / 3)  # each set once
    assert bench["weighted_avg"]["acc"] == pytest.approx(2 / 4)  # each sample once
    lines = protocol.table(result)
    rows = [line.split()[0] for line in lines[1:]]
    assert rows == ["bench/big", "bench/small", "bench", "bench", "alone"]  # a lone set gets no average rows
    assert "arithmetic avg" in lines[3] and "66.67" in lines[3] and "weighted avg" in lines[4] and "50.00" in lines[4]


def test_presets_name_openocr_folders_below_benchmark_root_and_flag_counts_that_differ(tmp_path):
    for name, folder, _ in protocol.BENCHMARKS["common6"]:
        lmdb(tmp_path / folder, ["ab"])
    sets = protocol.resolve_test_sets({}, ["common6"], str(tmp_path))
    assert list(sets) == ["IIIT5k", "SVT", "IC13_857", "IC15_1811", "SVTP", "CUTE80"]
    assert [t["expected"] for t in sets.values()] == [3000, 647, 857, 1811, 645, 288]
    reports = {n: dict(num_samples=1, acc=1.0, acc_exact=1.0, norm_edit_dis=1.0, expected_samples=t["expected"])
               for n, t in sets.items()}
    lines = protocol.table(protocol.summary(sets, reports))
    assert "(published: 3000)" in lines[1] and lines[-1].startswith("common6 weighted avg")
    with pytest.raises(ConfigError, match="u14m/curve"):
        protocol.resolve_test_sets({}, ["union14m"], str(tmp_path))


@pytest.mark.parametrize("name", ["../out", "a/b", "", ".hidden"])
def test_a_test_set_name_that_is_no_plain_folder_name_is_refused(tmp_path, name):
    lmdb(tmp_path / "t", ["ab"])
    with pytest.raises(ConfigError, match="plain name"):
        protocol.resolve_test_sets({name: str(tmp_path / "t")}, [], "")


@pytest.mark.parametrize("label, scored, reason", [
    ("café", "cafe", None),          # accents folded to ASCII
    ("two words", "twowords", None),  # whitespace removed
    ("a\u00b7b", "ab", None),        # a character outside the set removed
    ("中文", None, dl.EMPTY_LABEL),   # nothing left
    ("a" * 26, None, dl.TOO_LONG),
])
def test_test_labels_are_normalised_as_openocr_normalises_them(label, scored, reason):
    assert dl.scored_label(label, CHARSET, 25) == (scored, reason)


def test_a_lowercase_only_character_set_scores_lowercased_labels():
    assert dl.scored_label("AbC", "abc", 25) == ("abc", None)


def test_a_test_set_counts_labels_with_foreign_characters_and_reports_how_many_changed(tmp_path):
    path = lmdb(tmp_path / "t", ["café", "plain", "中文", "naïve"])
    as_test = dl.scan_lmdb(path, CHARSET, 25, test=True)
    as_training = dl.scan_lmdb(path, CHARSET, 25)
    assert len(as_test) == 3 and as_test.skipped == {dl.EMPTY_LABEL: 1}
    assert as_test.notes == {dl.LABELS_NORMALISED: 2}
    assert len(as_training) == 1 and as_training.skipped == {dl.CHARSET: 3}  # training keeps the strict rule
