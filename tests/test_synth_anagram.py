"""Target texts of TextSSR-F: anagram rules, unpermutable words, lexicon draws, determinism."""
from collections import Counter

import pytest

from textssr.synth.anagram import TextSource, anagram, build_text_source, is_permutable, variant_rng


@pytest.mark.parametrize("word", ["NICK", "HOTEL", "03/09/2009", "中华人民共和国", "咖啡Coffee", "AB"])
def test_anagram_keeps_the_multiset_and_differs(word):
    for variant in range(20):
        out = anagram(word, variant_rng(3407, 7, variant))
        assert Counter(out) == Counter(word)
        assert out != word


def test_spaces_stay_in_place_and_only_other_characters_move():
    word = "NEW YORK  CITY"
    for variant in range(20):
        out = anagram(word, variant_rng(0, 1, variant))
        assert [i for i, c in enumerate(out) if c == " "] == [i for i, c in enumerate(word) if c == " "]
        assert Counter(out) == Counter(word) and out != word


@pytest.mark.parametrize("word", ["A", "AAA", "中", "A A", "  "])
def test_unpermutable_words(word):
    assert not is_permutable(word)
    assert anagram(word, variant_rng(0, 0, 0)) == word
    keep = TextSource("anagram")
    assert keep.text_for(word, variant_rng(0, 0, 0)) == (word, "kept")
    lex = TextSource("anagram", lexicon=("SHOP",), unpermutable="lexicon")
    assert lex.text_for(word, variant_rng(0, 0, 0)) == ("SHOP", "lexicon")


def test_same_seed_region_variant_gives_same_text_and_others_vary():
    src = TextSource("anagram")
    texts = [src.text_for("PACIFIC", variant_rng(3407, r, v))[0] for r in range(5) for v in range(3)]
    again = [src.text_for("PACIFIC", variant_rng(3407, r, v))[0] for r in range(5) for v in range(3)]
    assert texts == again
    assert len(set(texts)) > 3


def test_lexicon_file_filters_and_mix_uses_both(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("EXIT\n\n  shop \n" + "X" * 30 + "\n咖啡\n", encoding="utf-8")
    src, dropped = build_text_source("mix", lexicon=str(path), anagram_ratio=0.5, max_len=25)
    assert src.lexicon == ("EXIT", "shop", "咖啡") and list(dropped) == ["X" * 30]
    hows = Counter(src.text_for("HOTEL", variant_rng(1, 2, v))[1] for v in range(200))
    assert set(hows) == {"anagram", "lexicon"} and 60 < hows["anagram"] < 140
    only_lex, _ = build_text_source("lexicon", lexicon=["EXIT"], max_len=25)
    assert only_lex.text_for("HOTEL", variant_rng(0, 0, 0)) == ("EXIT", "lexicon")


def test_bad_text_source_settings_fail_with_the_fix():
    with pytest.raises(ValueError, match="needs a lexicon"):
        build_text_source("lexicon")
    with pytest.raises(ValueError, match="choose one of"):
        build_text_source("shuffle")
    with pytest.raises(ValueError, match="no word"):
        build_text_source("lexicon", lexicon=["TOO-LONG-WORD"], max_len=4)


def test_even_sampling_uses_every_word_once_before_any_again():
    words = ["EXIT", "SHOP", "HOTEL", "PARK", "CAFE", "BAR", "INN"]
    src, _ = build_text_source("lexicon", lexicon=words, max_len=25, sampling="even", seed=5)
    texts = [src.text_for("HOTEL", variant_rng(5, k // 2, k % 2), item=k)[0] for k in range(3 * len(words) + 2)]
    for start in range(0, 3 * len(words), len(words)):  # each round of 7 items: the 7 words, in a new order
        assert sorted(texts[start:start + len(words)]) == sorted(words)
    assert texts[:len(words)] != texts[len(words):2 * len(words)]
    again, _ = build_text_source("lexicon", lexicon=words, max_len=25, sampling="even", seed=5)
    assert [again.text_for("X", variant_rng(0, 0, 0), item=k)[0] for k in range(len(texts))] == texts
    uniform, _ = build_text_source("lexicon", lexicon=words, max_len=25)  # the original's uniform draws
    drawn = [uniform.text_for("HOTEL", variant_rng(5, k, 0))[0] for k in range(len(words))]
    assert len(set(drawn)) < len(words)


def test_lexicon_words_the_font_cannot_draw_are_left_out_with_the_reason():
    from textssr.data.fonts import DEFAULT_FONT, resolve_font
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        font = resolve_font(DEFAULT_FONT)
    src, left_out = build_text_source("lexicon", lexicon=["EXIT", "नमस्ते", "X" * 30], max_len=25, font_path=font)
    assert src.lexicon == ("EXIT",)
    assert left_out["नमस्ते"].startswith("missing_glyph: ") and "longer than max_len=25" in left_out["X" * 30]
