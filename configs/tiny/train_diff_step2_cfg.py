# Tiny CDM step 2 for the CPU demo (make demo): continue tiny step 1's UNet on the cleaner step-2 subset.
#   accelerate launch --cpu --num_processes 1 train_diff.py --config configs/tiny/train_diff_step2_cfg.py
# Only what differs from tiny step 1 / ../train_diff_step2_cfg.py (keys documented in ../train_*_cfg.py).
_base_ = ["./train_diff_step1_cfg.py"]

lmdb_path = "data/tiny/AnyWord-lmdb/step2_lmdb"
output_dir = "model/tiny/step2"
pretrained_unet = "model/tiny/step1"  # tiny step 1's output folder (its latest checkpoint)
max_train_steps = 300
lr_scheduler = "cosine"           # anneal to 0 over step 2: sharper glyphs than a constant rate (README, results)
checkpointing_steps = 150
image_log_steps = 150
tracker_project_name = "cdm-step2"
