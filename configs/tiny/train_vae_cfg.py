# Tiny VAE stage for the CPU demo (make demo): a small random VAE trained on the embedded tiny corpus.
#   accelerate launch --cpu --num_processes 1 train_vae.py --config configs/tiny/train_vae_cfg.py
# Only what differs from ../train_vae_cfg.py (where every key is documented).
_base_ = ["../train_vae_cfg.py"]

lmdb_path = ["data/tiny/AnyWord-lmdb/step1_lmdb", "data/tiny/AnyWord-lmdb/step2_lmdb"]
output_dir = "model/tiny/vae_ft"
pretrained_model_name_or_path = None  # no SD 2.1 here: the VAE is built from vae_arch
resolution = 64
dataloader_num_workers = 1
dataloader_worker_nice = 10      # the worker yields most of the 2 cores to the compute threads (19 starves it: -7 %)
# 2 levels → latents of resolution / 2 (32 × 32 at 64 px), 4 latent channels as SD's. Text in a 64-px crop is
# ~20 px tall: a 3-level VAE (/4) trained for minutes leaves PP-OCRv4 able to read only ~40 % of its reconstructions,
# this one ~90 % after 600 steps (README, results). Trained from scratch, its latents are not SD's scale: "auto"
# stores 1 / their std as scaling_factor, so the CDM sees unit-variance latents.
# No self-attention in the mid block (SD's has one): over 32 × 32 latents it costs a third of a VAE step on a CPU
# and adds nothing a 64-px crop needs; the frozen VAE's encoding in the CDM stages gets faster too.
# _delete_=True: this dict replaces the base value instead of being merged into it (mmengine).
vae_arch = dict(_delete_=True, down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                block_out_channels=[32, 64], layers_per_block=1, latent_channels=4, norm_num_groups=16,
                sample_size=64, mid_block_add_attention=False)
scaling_factor = "auto"
adam_fused = True
mixed_precision = "auto"          # bf16 autocast where timed faster on this machine (~1.7x on AVX512-BF16), else fp32
train_batch_size = 8
gradient_accumulation_steps = 1
max_train_steps = 600
learning_rate = 1e-3
checkpointing_steps = 300
checkpoints_total_limit = 2
logging_steps = 50
image_log_steps = 300
