# Tiny CDM step 1 for the CPU demo (make demo): a small random UNet on the tiny corpus, VAE from the tiny VAE stage.
#   accelerate launch --cpu --num_processes 1 train_diff.py --config configs/tiny/train_diff_step1_cfg.py
# Only what differs from ../train_diff_step1_cfg.py (keys documented there and in ../train_vae_cfg.py).
_base_ = ["../train_diff_step1_cfg.py"]

lmdb_path = "data/tiny/AnyWord-lmdb/step1_lmdb"
output_dir = "model/tiny/step1"
pretrained_model_name_or_path = None  # no SD 2.1 here: the UNet is built from unet_arch, the scheduler is SD 2.1's
pretrained_vae = "model/tiny/vae_ft"  # the tiny VAE stage's output folder (its latest checkpoint)
resolution = 64
dataloader_num_workers = 1
dataloader_worker_nice = 10      # the worker yields most of the 2 cores to the compute threads (19 starves it: -7 %)
# Latents are 32 × 32 × 4 (the 2-level tiny VAE); self-/cross-attention only at 16 × 16 and 8 × 8, where it is
# cheap on a CPU; the TTF encoder shrinks to the UNet's cross-attention width. 64 channels at 32 × 32 (not 32):
# ~20 % more time per step, but legible text in ~2/3 of the steps (README, results).
# _delete_=True: this dict replaces the base value instead of being merged into it (mmengine).
unet_arch = dict(_delete_=True, sample_size=32, in_channels=13, out_channels=4,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 block_out_channels=[64, 64, 64], layers_per_block=1, cross_attention_dim=64,
                 attention_head_dim=1, norm_num_groups=16, use_linear_projection=True,
                 ttf_embed_dim=64, ttf_depth=2, ttf_num_heads=2)
# The recipe of README "Results" (docs/results.md): x0-prediction learns the glyph → text mapping several
# times faster than SD 2.1's v-prediction at this budget; the text area weighs 5× in the loss; the VAE, trained
# from scratch without a KL term, has an untrained posterior variance, so the UNet trains on its mean. The demo
# samples in one step from pure noise (configs/tiny/infer_cfg.py), so training draws the noisiest quarter of the
# timesteps 4× as often (half of all draws); the frozen VAE encodes in bfloat16 (fast on AMX/AVX512-BF16 CPUs).
prediction_type = "sample"
text_loss_weight = 5.0
vae_latents = "mode"
timestep_bias_strategy = "later"
timestep_bias_portion = 0.25
timestep_bias_multiplier = 4.0
vae_dtype = "auto"
mixed_precision = "auto"
adam_fused = True
latent_cache = True
region_placement = "center"
train_batch_size = 8
gradient_accumulation_steps = 1
max_train_steps = 1800
learning_rate = 1e-3
checkpointing_steps = 600
checkpoints_total_limit = 2
logging_steps = 50
image_log_steps = 400
image_log_scheduler = "ddim"      # the grid samples as configs/tiny/infer_cfg.py does
image_log_timestep_spacing = "trailing"
image_log_inference_steps = 1
