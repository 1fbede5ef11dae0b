"""Architecture and noise-schedule dicts: SD 2.1's (the paper's) and the tiny ones tests and the demo use.

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

# Tiny VAE: SD 2.1's block types and 4 levels (factor 8: 64-pixel regions → 8×8 latents), narrow and shallow.
TINY_VAE_ARCH = dict(SD21_VAE_ARCH, layers_per_block=1, block_out_channels=(32, 32, 64, 64), sample_size=64)

# Tiny UNet: SD 2.1's block types on 3 levels, linear projections, upcast attention; the TTF encoder keeps the
# paper's input geometry (25 characters of 64×64, patch 8) and shrinks to width 64, 2 blocks, 2 heads.
TINY_UNET_ARCH = dict(
    sample_size=8, in_channels=13, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(2, 4, 4), cross_attention_dim=64, use_linear_projection=True, upcast_attention=True,
    ttf_img_size=64, ttf_patch_size=8, ttf_in_chans=25, ttf_embed_dim=64, ttf_depth=2, ttf_num_heads=2,
)
