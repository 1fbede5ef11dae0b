# Inference with the tiny demo's checkpoints (make demo): CPU, seconds.
_base_ = ["../infer_cfg.py"]

bench = "data/tiny/bench/test.json"
output_dir = "output/tiny"
pretrained_vae = "model/tiny/vae_ft"
pretrained_unet = "model/tiny/step2"
scheduler_path = None                  # the scheduler/ saved with the UNet's checkpoint
resolution = None                      # None: the UNet's training values (configs/tiny/train_diff_*: 64, 64, 25)
ttf_size = None
max_len = None
num_inference_steps = 10                # the tiny models are trained for it (image_log_inference_steps)
batch_size = 8
