# TextSSR-F synthesis (synthesize.py): anagrams of real words placed into their own real regions,
# screened by PP-OCRv4, written as an STR LMDB at <output_dir>/lmdb.
#   python synthesize.py --config configs/synth_cfg.py
#   accelerate launch --num_processes 8 synthesize.py --config configs/synth_cfg.py
# Restart the same command after a crash: it resumes. Changing a content key below (anything but
# output_dir, keep_shards, contact_sheet_size, poll_seconds) on resume is refused, and so is a
# checkpoint folder that now resolves to another (newer) checkpoint.

_base_ = ["sampling_cfg.py"]

# Regions: an AnyWord JSON, a benchmark folder holding test.json, an AnyWord-lmdb folder tree, a folder of ICDAR
# 2013/2015 annotations (gt_<image>.txt beside the images; "###" words are left out), or a folder of photos
# (jpg/png/webp, searched recursively) whose text lines PP-OCRv4 finds (docs/generation.md, "Your photos").
source = "AnyWord-lmdb/step1_lmdb"
max_regions = None              # use only the first N regions of the source (None: all)
output_dir = "output/textssr_f"

# A folder of photos: which detected lines become regions (each removed line is counted under the first rule that
# removes it, in stats.json "source"). Changing them re-filters the stored detections without detecting again.
min_line_confidence = 0.5       # PP-OCRv4's recognition confidence of the line's reading, in [0, 1]
min_line_height = 16            # pixels across the line
min_line_aspect = 0.0           # width / height of the line
max_line_aspect = None          # (None: no upper limit)
max_line_angle = 30.0           # degrees between the line's direction and the horizontal, in [0, 90]
line_chars = None               # a regular expression the reading must match whole, e.g. "[A-Za-z0-9]+" (None: any);
                                # the `language` key ("Latin" / "Chinese") applies to the reading as well
min_photo_side = 32             # photos smaller than this (pixels, shorter side) are skipped and counted
max_photo_pixels = 50_000_000   # photos larger than this (width x height, read from the header) are skipped and counted
detections_dir = None           # where the detections are stored (None: <output_dir>/detections); point a new
                                # output_dir at an earlier run's to re-filter it without detecting again

# Sampling (the keys of sampling_cfg.py) where TextSSR-F differs from infer.
mixed_precision = "fp16"        # half precision on the GPUs that synthesize millions of crops
region_placement = "random"     # crop window around the word as in training (drawn from (seed, region, variant))

# Target texts.
variants_per_region = 8
text_source = "anagram"         # "anagram" | "lexicon" | "mix"
lexicon = None                  # word-list file (UTF-8, one per line) or a list of words
lexicon_sampling = "random"     # "random": each lexicon word a uniform draw | "even": every word once before any
                                # word again (a small lexicon spread evenly over the regions)
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
detection = "auto"              # photos: "beside" detects text lines in a CPU thread beside model loading and denoising,
                                # "first" every photo before generation starts, "auto" beside on a GPU and first on a
                                # CPU (where denoising keeps the cores busy). The same bytes either way
