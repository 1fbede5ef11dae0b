# TextSSR-F synthesis (synthesize.py): anagrams of real words placed into their own real regions,
# screened by PP-OCRv4, written as an STR LMDB at <output_dir>/lmdb.
#   python synthesize.py --config configs/synth_cfg.py
#   accelerate launch --num_processes 8 synthesize.py --config configs/synth_cfg.py
# Restart the same command after a crash: it resumes. Changing a content key below (anything but
# output_dir, keep_shards, contact_sheet_size, poll_seconds) on resume is refused, and so is a
# checkpoint folder that now resolves to another (newer) checkpoint.

_base_ = ["sampling_cfg.py"]

# Regions: an AnyWord JSON, a benchmark folder holding test.json, or an AnyWord-lmdb folder tree.
source = "AnyWord-lmdb/step1_lmdb"
max_regions = None              # use only the first N regions of the source (None: all)
output_dir = "output/textssr_f"

# Sampling (the keys of sampling_cfg.py) where TextSSR-F differs from infer.
mixed_precision = "fp16"        # half precision on the GPUs that synthesize millions of crops
region_placement = "random"     # crop window around the word as in training (drawn from (seed, region, variant))

# Target texts.
variants_per_region = 8
text_source = "anagram"         # "anagram" | "lexicon" | "mix"
lexicon = None                  # word-list file (UTF-8, one per line) or a list of words
anagram_ratio = 0.5             # "mix": probability that a variant is an anagram
unpermutable = "keep"           # one-character / all-same words: "keep" their text or draw a "lexicon" word

# Screening: None keeps every crop.
screening = dict(match="exact", min_ned=1.0, min_confidence=0.0, case_sensitive=False, ignore_spaces=True)

# Output.
image_format = "png"            # "png" (lossless) | "jpg"
jpeg_quality = 95
keep_shards = False             # keep <output_dir>/shards/ after the merge (multi-process runs)
contact_sheet_size = 32
poll_seconds = 5.0              # how often rank 0 checks whether the other ranks' shards are done
overlap = True                  # build the next batch and screen + encode the previous one in threads while the current
                                # one denoises (the GPU never waits for the CPU parts); False: one after another.
                                # The same bytes either way
