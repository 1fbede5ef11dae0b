# The sampling keys of the tiny demo's checkpoints (make demo), shared by configs/tiny/infer_cfg.py and
# configs/tiny/synth_cfg.py: only what differs from ../sampling_cfg.py.
_base_ = ["../sampling_cfg.py"]

pretrained_vae = "model/tiny/vae_ft"   # training output folders: their latest checkpoint is used
pretrained_unet = "model/tiny/step2"
scheduler_path = None                  # the scheduler/ saved with the UNet's checkpoint
resolution = None                      # None: the UNet's training values (configs/tiny/train_diff_*: 64, 64, 25)
ttf_size = None
max_len = None
# One DDIM step from pure noise (trailing spacing: t = 999), i.e. the UNet's x0 estimate: a UNet trained for
# minutes on a CPU predicts the clean text well from pure noise but not yet from its own partly denoised latents,
# so more steps read worse here (docs/results.md). Full-scale configs keep the original's DDPM sampling.
scheduler = "ddim"
timestep_spacing = "trailing"
num_inference_steps = 1
batch_size = 8
