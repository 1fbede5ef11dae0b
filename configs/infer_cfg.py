# Inference on a benchmark (infer.py): the original's defaults.
#   python infer.py [--config configs/infer_cfg.py] [--cfg-options key=value ...]
#   accelerate launch --num_processes 8 infer.py --config configs/infer_cfg.py
# Re-running the same command on a partly written output_dir resumes it. The sampling keys (checkpoints, sampler,
# precision, conditions) are documented in sampling_cfg.py; this file states infer's own.
_base_ = ["sampling_cfg.py"]

bench = "./benchmark/ic13/test.json"   # AnyWord JSON, or a folder holding test.json; a relative data_root is
                                       # looked up from the current directory, then beside the JSON
output_dir = "./output/ic13"           # local/ region/ gt/ <i>.png, labels.json, instances.json, meta.json
device = "auto"                        # "auto": each process's GPU, else the CPU | "cpu": force the CPU
