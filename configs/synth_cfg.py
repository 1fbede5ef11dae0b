# TextSSR-F synthesis (synthesize.py): anagrams of real words placed into their own real regions,
# screened by PP-OCRv4, written as an STR LMDB at <output_dir>/lmdb.
#   python synthesize.py --config configs/synth_cfg.py
#   accelerate launch --num_processes 8 synthesize.py --config configs/synth_cfg.py
# Restart the same command after a crash: it resumes. Changing a content key below (anything but
# output_dir, keep_shards, contact_sheet_size, poll_seconds) on resume is refused, and so is a
# checkpoint folder that now resolves to another (newer) checkpoint.

# Regions: an AnyWord JSON, a benchmark folder holding test.json, or an AnyWord-lmdb folder tree.
source = "AnyWord-lmdb/step1_lmdb"
max_regions = None              # use only the first N regions of the source (None: all)
language = None                 # e.g. "Latin" or "Chinese" to keep one language
output_dir = "output/textssr_f"

# Checkpoints and sampling: the same keys and meanings as infer (configs/infer_cfg.py).
pretrained_vae = "model/vae_ft"  # a vae/ model folder, or a training output folder (its latest checkpoint-*/vae)
pretrained_unet = "model/step2"  # likewise for unet/
scheduler_path = "model/stable-diffusion-v2-1"  # SD 2.1 folder or a scheduler folder; when it has none: the
                                                # scheduler/ saved with the UNet's checkpoint, else SD 2.1's config
scheduler = "ddpm"              # sampler by name (textssr.models.SCHEDULERS); the original uses DDPM
timestep_spacing = None         # None keeps the scheduler config's (SD 2.1: "leading", the original's); "trailing"
                                # starts at the last training step — better for few steps (Lin et al. 2024)
num_inference_steps = 20
batch_size = 32                 # items per denoising batch (per process)
seed = 3407                     # item (region, variant): text, crop window and noise come from (seed, region, variant)
mixed_precision = "fp16"        # "no" | "fp16" (GPU) | "bf16" | "auto" (as in configs/infer_cfg.py)
allow_tf32 = False              # TF32 matmuls and convolutions on Ampere+ GPUs; False leaves torch's defaults
ddp_timeout = 7200              # seconds ranks wait for each other before the run stops naming this key
# Conditions. None takes the UNet's training value (its checkpoint's config.py; ttf_size/max_len else its encoder).
resolution = 256
ttf_size = 64
max_len = 25
font_path = "AlibabaPuHuiTi-3-85-Bold.ttf"  # when absent a bold CJK fallback is used, with a warning
region_placement = "random"     # crop window around the word: "random" (as in training) or "center"
allow_far_resolution = False    # True: a resolution more than 4x from the UNet's training value (as in infer)
strict = False                  # True: raise on the first bad input instead of skipping and counting it
allow_images_outside_root = False  # True: read img_names that are absolute or climb out of data_root with ../

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
