"""Architecture and noise-schedule dicts of SD 2.1 (the paper's); the tiny ones the tests use live in tests/.

An arch dict is the keyword arguments of the model class: ``AutoencoderKL(**vae_arch)``,
``TextSSRUNet2DConditionModel(**unet_arch)``. ``TextSSRUNet2DConditionModel()`` with no arguments is SD 2.1's UNet
with 13 input channels and the paper's TTF encoder, so SD 2.1's UNet needs no dict here.
"""

# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (written there for DDIMScheduler; the original
# loads it as DDPMScheduler). v-prediction.
SD21_SCHEDULER_CONFIG = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
    trained_betas=None,
)

# stabilityai/stable-diffusion-2-1 vae/config.json: 4 levels, downsampling factor 8.
SD21_VAE_ARCH = dict(
    in_channels=3, out_channels=3, latent_channels=4, act_fn="silu", layers_per_block=2, norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768, scaling_factor=0.18215,
)
