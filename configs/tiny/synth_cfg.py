# TextSSR-F on the tiny demo's checkpoints (make demo), CPU, seconds:
#   python synthesize.py --config configs/tiny/synth_cfg.py
#   ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 synthesize.py --config configs/tiny/synth_cfg.py
_base_ = ["../synth_cfg.py"]

source = "data/tiny/train.json"        # the tiny corpus's training regions (or the bench folder data/tiny/bench)
max_regions = 48
output_dir = "output/tiny_synth"
pretrained_vae = "model/tiny/vae_ft"   # training output folders: their latest checkpoint is used
pretrained_unet = "model/tiny/step2"
scheduler_path = None                  # the scheduler/ saved with the UNet's checkpoint
resolution = None                      # None: the UNet's training values (configs/tiny/train_diff_*: 64, 64, 25)
ttf_size = None
max_len = None
scheduler = "ddim"                     # as configs/tiny/infer_cfg.py: one trailing DDIM step suits the tiny models
timestep_spacing = "trailing"
num_inference_steps = 1
batch_size = 8
mixed_precision = "no"
variants_per_region = 2
screening = None                       # a tiny model draws no legible text: keep everything
contact_sheet_size = 16
poll_seconds = 0.5
