# The sampling keys infer.py, synthesize.py, edit.py and the app share: the base of configs/infer_cfg.py and
# configs/synth_cfg.py (each states only what differs). Override any key with --cfg-options key=value.

language = None                        # e.g. "Latin" or "Chinese": use only that language's instances
output_dir = "./output"                # where the results go (each script's own layout)

# Checkpoints: a model folder, or a training output folder (its latest checkpoint-*/vae or /unet is used).
pretrained_vae = "model/vae_ft"
pretrained_unet = "model/step2"
scheduler_path = "model/stable-diffusion-v2-1"  # SD 2.1 folder (its scheduler/) or a scheduler folder; when it has
                                                # none: the scheduler/ saved in the UNet's checkpoint, else the
                                                # built-in SD 2.1 config (with a warning)
scheduler = "ddpm"                     # sampler by name (textssr.models.SCHEDULERS); the original uses DDPM
timestep_spacing = None                # None keeps the scheduler config's (SD 2.1: "leading", the original's); "trailing"
                                       # starts at the last training step — better for few steps (Lin et al. 2024)

# Sampling.
num_inference_steps = 20               # denoising steps
batch_size = 32                        # items per denoising batch (per process)
seed = 3407                            # an item's crop window and initial noise come from (seed, item)
mixed_precision = None                 # None: accelerate's setting (launch flag, config file), else "no" (fp32, as the
                                       # original) | "no" | "fp16" (GPU) | "bf16" | "auto": bf16 (else fp16)
                                       # on a GPU; on the CPU bf16 only where one sampling step is timed >= 1.1x faster
allow_tf32 = False                     # TF32 matmuls and convolutions on Ampere+ GPUs; False leaves torch's defaults
ddp_timeout = 7200                     # seconds ranks wait for each other (uneven shares, model loading) before the run
                                       # stops naming this key

# Conditions. None takes the UNet's training value: from its checkpoint's training settings (written by
# train_diff.py), and for ttf_size/max_len else from its TTF encoder. A set ttf_size/max_len must match the encoder.
resolution = 256                       # side R of the square region, pixels
ttf_size = 64                          # side of each character image of ttf_img, and glyph font size
max_len = 25                           # characters encoded in ttf_img (longer texts are truncated there)
font_path = "AlibabaPuHuiTi-3-85-Bold.ttf"  # glyph/ttf font; when absent a bold CJK fallback is used, with a warning
region_placement = "center"            # crop window around the word: "center" (deterministic) or "random"
                                       # (as in training; drawn from (seed, item), so still reproducible)
allow_far_resolution = False           # True: run at a resolution more than 4x from the UNet's training value
                                       # (refused by default: meaningless output, memory growing with resolution²)

strict = False                         # True: stop at the first bad input instead of skipping and counting it
allow_images_outside_root = False      # True: read img_names that are absolute or climb out of data_root with ../
                                       # (default: skipped and counted as image_outside_root)
