"""Screening decisions: the rule alone, then PP-OCRv4 on real crops whose labels are known."""
import json

import cv2
import pytest

from textssr.synth.screening import ScreeningRule, Screener, build_screener, screen_decision


def test_rule_reasons_in_order():
    exact = ScreeningRule()
    assert screen_decision("Hotel", "HOTEL", 0.9, exact) is None  # case-insensitive by default
    assert screen_decision("Hotel", "HOTEL", 0.9, ScreeningRule(case_sensitive=True)) == "text_mismatch"
    assert screen_decision("NEW YORK", "NEWYORK", 0.9, exact) is None  # spaces ignored by default
    assert screen_decision("HOTEL", "", 0.0, exact) == "no_text"
    assert screen_decision("HOTEL", "HOTEL", 0.4, ScreeningRule(min_confidence=0.5)) == "low_confidence"
    ned_rule = ScreeningRule(match="ned", min_ned=0.8)
    assert screen_decision("PACIFIC", "PACIFLC", 0.9, ned_rule) is None  # 1 - 1/7 >= 0.8
    assert screen_decision("PACIFIC", "PACLFLC", 0.9, ned_rule) == "low_ned"  # 1 - 2/7 < 0.8


def test_screening_none_and_bad_keys():
    assert build_screener(None) is None
    with pytest.raises(ValueError, match="unknown key"):
        build_screener({"threshold": 0.5})
    with pytest.raises(ValueError, match="choose one of"):
        ScreeningRule(match="fuzzy")


@pytest.fixture(scope="module")
def read_crop(real_crops_dir):
    labels = json.loads((real_crops_dir / "labels.json").read_text(encoding="utf-8"))

    def load(name):
        return cv2.cvtColor(cv2.imread(str(real_crops_dir / name)), cv2.COLOR_BGR2RGB), labels[name]
    return load


@pytest.fixture(scope="module")
def screener():
    return build_screener(dict(match="exact", min_confidence=0.5))


def test_legible_crops_pass_and_mismatched_labels_fail(read_crop, screener):
    # PP-OCRv4 reads these four correctly (DAVIDSON as "Davidson": case-insensitive by default).
    crops, labels = zip(*(read_crop(n) for n in ["1036169.jpg", "1058892.jpg", "1240078.jpg", "1210236.jpg"]))
    accepted = screener.screen(crops, labels)
    assert [reason for reason, _, _ in accepted] == [None] * 4, accepted
    wrong = labels[1:] + labels[:1]  # every crop paired with another crop's word
    assert [reason for reason, _, _ in screener.screen(crops, wrong)] == ["text_mismatch"] * 4


def test_case_sensitive_and_illegible_crops_are_rejected(read_crop, screener):
    davidson, label = read_crop("1210236.jpg")
    strict_case = Screener(ScreeningRule(case_sensitive=True), recognizer=screener.recognizer)
    assert strict_case.screen([davidson], [label])[0][0] == "text_mismatch"
    grand, label = read_crop("1223731.jpg")  # small, blurred: read with confidence ~0.4
    reason, _, conf = screener.screen([grand], [label])[0]
    assert reason == "low_confidence" and conf < 0.5
