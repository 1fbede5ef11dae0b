# CDM step 1 of TextSSR (method.md §5): train the 13-channel UNet from SD 2.1's unet on the broad set, VAE frozen.
#   accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step1_cfg.py
# Keys shared with the VAE stage (data, optimisation, checkpoints, logging) are documented in train_vae_cfg.py;
# this file states what differs and the keys only the CDM stages have.
_base_ = ["train_vae_cfg.py"]

lmdb_path = "model/AnyWord-lmdb/step1_lmdb"
pretrained_vae = "model/vae_ft/checkpoint-150000/vae"  # the fine-tuned VAE (frozen here)
output_dir = "model/step1"
train_batch_size = 4
max_train_steps = 50000             # the paper's step-1 UNet is checkpoint-50000
checkpointing_steps = 10000
tracker_project_name = "cdm-step1"
image_log_steps = 2000

# ---- CDM-only keys ------------------------------------------------------------------------------------------
# The UNet to start from: a diffusers unet folder (SD 2.1's 4-channel unet is widened to 13 input channels, the
# original's and our own 13-channel folders load as they are) or a training output folder (its latest
# checkpoint-*/unet); None = <pretrained_model_name_or_path>/unet; with that also None, built from unet_arch.
pretrained_unet = None
unet_arch = None                    # TextSSRUNet2DConditionModel keyword arguments for a random UNet (tiny configs)
conv_in_init = "sd"                 # widening SD's conv_in: "sd" = SD weights in channels 0-3, zeros elsewhere;
                                    # "random" = re-initialise it entirely, as the original did
# Noise scheduler folder (scheduler_config.json); None = <pretrained_model_name_or_path>/scheduler, or with that also
# None SD 2.1's config (scaled-linear 0.00085-0.012, 1000 steps, v-prediction). Loaded as DDPMScheduler.
scheduler_path = None
prediction_type = None              # override the scheduler's: "epsilon", "v_prediction" or "sample" (x0); None keeps
                                    # it (SD 2.1: v_prediction, the original's)
snr_gamma = None                    # min-SNR-γ loss weighting (e.g. 5.0); None = plain MSE, as the original
text_loss_weight = 1.0              # weight of the text area's latent positions (mask 0) in the MSE; 1.0 = uniform,
                                    # as the original; > 1 spends more of the gradient on drawing the glyphs
# Training timesteps: "none" draws them uniformly (the original); "later"/"earlier" draw the last/first
# timestep_bias_portion of the range timestep_bias_multiplier× as often, "range" does so for [begin, end) — e.g.
# "later" for a model sampled in few steps from pure noise, whose first (noisiest) step matters most.
timestep_bias_strategy = "none"
timestep_bias_multiplier = 1.0
timestep_bias_portion = 0.25
timestep_bias_begin = 0
timestep_bias_end = 1000
# Training latents of image/masked_image/glyph: "sample" draws from the VAE posterior (the original, method.md §4);
# "mode" takes its mean — for a VAE trained with no KL term from scratch, whose posterior variance never trained.
vae_latents = "sample"
# latent_cache=True: encode each sample once and keep its latents in memory for the next epochs (needs a crop that
# does not change: region_placement="center", vae_latents="mode"); ~50 KB per sample at 256 px — small datasets.
latent_cache = False
vae_dtype = None                    # the frozen VAE's dtype: None = as mixed_precision (the original); "fp32" = float32
                                    # even under fp16 (a fine-tuned VAE that overflows float16: the first batch's
                                    # latents are checked); "bf16" = bfloat16 even when
                                    # the UNet trains in float32 (a third of the encoding time on CPUs with AVX512-BF16
                                    # or AMX, 30x slower without); "auto" = bf16 only where the first batch's encoding is
                                    # timed >= 1.1x faster (logged)
image_log_inference_steps = 20      # sampling steps of the TensorBoard sample grid
image_log_scheduler = "ddpm"        # its sampler (a textssr.models.SCHEDULERS name)
image_log_timestep_spacing = None   # its step spacing; None keeps the scheduler's (SD 2.1: "leading")
