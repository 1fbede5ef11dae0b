# TextSSR-F on the tiny demo's checkpoints (make demo), CPU, seconds:
#   python synthesize.py --config configs/tiny/synth_cfg.py
#   ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 synthesize.py --config configs/tiny/synth_cfg.py
# Keys not set here or in sampling_cfg.py take ../synth_cfg.py's values.
_base_ = ["sampling_cfg.py"]

source = "data/tiny/train.json"        # the tiny corpus's training regions (or the bench folder data/tiny/bench; or
                                       # a folder of your photos / ICDAR annotations: ../synth_cfg.py says how)
max_regions = 48
output_dir = "output/tiny_synth"
region_placement = "random"            # as ../synth_cfg.py (the tiny sampling base keeps infer's "center")
mixed_precision = "no"
variants_per_region = 2
screening = None                       # a tiny model draws no legible text: keep everything
contact_sheet_size = 16
poll_seconds = 0.5
