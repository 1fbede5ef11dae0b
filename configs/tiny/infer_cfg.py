# Inference with the tiny demo's checkpoints (make demo): CPU, seconds. Keys not set here or in sampling_cfg.py
# take ../infer_cfg.py's values.
_base_ = ["sampling_cfg.py"]

bench = "data/tiny/bench/test.json"
output_dir = "output/tiny"
