"""TextSSR-F: target texts (anagrams / lexicon), OCR screening, and the resumable, sharded STR LMDB writer."""
from textssr.synth.anagram import TextSource, anagram, build_text_source, variant_rng
from textssr.synth.runner import synthesize
from textssr.synth.screening import Screener, ScreeningRule, build_screener
from textssr.synth.str_lmdb import StrLmdbReader, StrLmdbWriter, StrRecord, merge_str_lmdbs

__all__ = ["Screener", "ScreeningRule", "StrLmdbReader", "StrLmdbWriter", "StrRecord", "TextSource", "anagram",
           "build_screener", "build_text_source", "merge_str_lmdbs", "synthesize", "variant_rng"]
