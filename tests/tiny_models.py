"""Tiny random models in SD 2.1's folder layout for the tests (and benchmarks): what a real SD 2.1 download looks
like, at a size that runs in seconds on a CPU."""
import os

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from textssr.models.arch import SD21_SCHEDULER_CONFIG, SD21_VAE_ARCH

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


def save_tiny_sd21(path: str, vae_arch: dict = TINY_VAE_ARCH, unet_arch: dict = TINY_UNET_ARCH, seed: int = 0) -> str:
    """Write a random model in SD 2.1's folder layout — ``vae/``, ``unet/`` (a plain 4-channel
    UNet2DConditionModel, as SD ships it) and ``scheduler/`` — for tests and the tiny demo. The same ``seed``
    writes the same weights. Returns ``path``."""
    unet_config = {k: v for k, v in unet_arch.items() if not k.startswith("ttf_")}
    unet_config["in_channels"] = vae_arch.get("latent_channels", 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae, unet = AutoencoderKL(**vae_arch), UNet2DConditionModel(**unet_config)
    vae.save_pretrained(os.path.join(path, "vae"))
    unet.save_pretrained(os.path.join(path, "unet"))
    DDIMScheduler.from_config(SD21_SCHEDULER_CONFIG).save_pretrained(os.path.join(path, "scheduler"))
    return path


