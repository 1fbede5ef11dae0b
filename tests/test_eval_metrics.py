"""Sen.ACC / NED arithmetic on known strings (Latin, CJK, empty, case) and the NED >= Sen.ACC property."""
import random

import pytest

from textssr.eval.metrics import SCORE_KEYS, edit_distance, ned, score


def test_edit_distance_known_pairs():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("EXIT", "EXIT") == 0


def test_cjk_counts_characters_not_bytes():
    assert edit_distance("你好世界", "你好世") == 1
    assert ned("你好世", "你好世界") == pytest.approx(0.75)  # 1 - 1/4; UTF-8 bytes would give 1 - 3/12
    assert ned("中国", "中國") == pytest.approx(0.5)


def test_ned_edges():
    assert ned("", "") == 1.0
    assert ned("", "HOTEL") == 0.0  # empty prediction scores nothing
    assert ned("HOTEL", "HOTEL") == 1.0
    assert ned("LOTEL", "HOTEL") == pytest.approx(0.8)


def test_score_known_values_and_case():
    result = score(["HOTEL", "Davidson", "", "你好"], ["HOTEL", "DAVIDSON", "EXIT", "你好吗"])
    assert set(SCORE_KEYS) <= set(result)
    assert result["num"] == 4
    assert result["sen_acc"] == pytest.approx(1 / 4)
    assert result["sen_acc_case_insensitive"] == pytest.approx(2 / 4)
    # NED per item: 1, 1 - 7/8, 0, 1 - 1/3
    assert result["ned"] == pytest.approx((1 + 1 / 8 + 0 + 2 / 3) / 4)
    assert result["ned_case_insensitive"] == pytest.approx((1 + 1 + 0 + 2 / 3) / 4)


def test_score_empty_and_mismatched():
    assert score([], []) == {"num": 0, "sen_acc": None, "ned": None,
                             "sen_acc_case_insensitive": None, "ned_case_insensitive": None}
    with pytest.raises(ValueError, match="pair up"):
        score(["a"], ["a", "b"])


def test_ned_never_below_sen_acc_on_random_strings():
    rng = random.Random(3407)
    alphabet = "abAB你好中"
    for _ in range(200):
        n = rng.randint(1, 12)
        gts = ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(n)]
        preds = [g if rng.random() < 0.5 else "".join(rng.choices(alphabet, k=rng.randint(0, 6))) for g in gts]
        result = score(preds, gts)
        assert result["ned"] >= result["sen_acc"]
        assert result["ned_case_insensitive"] >= result["sen_acc_case_insensitive"] >= result["sen_acc"]
        assert 0.0 <= result["ned"] <= 1.0
