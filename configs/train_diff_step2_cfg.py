# CDM step 2 of TextSSR (method.md §5): continue step 1's UNet on the smaller, cleaner step-2 subset.
#   accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step2_cfg.py
# Every key is documented in train_vae_cfg.py (shared) or train_diff_step1_cfg.py (CDM only).
_base_ = ["train_diff_step1_cfg.py"]

lmdb_path = "model/AnyWord-lmdb/step2_lmdb"
pretrained_unet = "model/step1/checkpoint-50000/unet"
output_dir = "model/step2"
max_train_steps = 25000             # the paper's step-2 UNet is checkpoint-25000
checkpointing_steps = 5000
tracker_project_name = "cdm-step2"
