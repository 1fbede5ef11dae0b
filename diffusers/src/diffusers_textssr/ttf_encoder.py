"""The TTF encoder (``ttf_net``): a ViT over the per-character TTF stack (method.md §4).

TextSSR has no text prompt: each character of the target text is drawn into its own 64×64 channel
(``ttf_img``, method.md §3.8) and this ViT turns the 25-channel stack into the UNet's cross-attention context.
It *is* timm's ``VisionTransformer`` (not a re-implementation) so that parameter names — and therefore the
original checkpoints' ``ttf_net.*`` keys — match exactly.
"""
from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer


class TTFEncoder(VisionTransformer):
    """ViT with qkv bias and a class token, no head and no pooling.

    Parameters: ``patch_embed.proj``, ``cls_token``, ``pos_embed``,
    ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm`` — the original's names.
    Defaults are the paper's geometry: 64×64 images, 8×8 patches, 25 characters, width 1024 (SD 2.1's
    cross-attention width), 6 blocks, 8 heads.
    """

    def __init__(self, img_size: int = 64, patch_size: int = 8, in_chans: int = 25, embed_dim: int = 1024,
                 depth: int = 6, num_heads: int = 8, mlp_ratio: float = 4.0):
        if img_size % patch_size:
            raise ValueError(f"TTF encoder: img_size {img_size} is not a multiple of patch_size {patch_size}")
        if embed_dim % num_heads:
            raise ValueError(f"TTF encoder: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, class_token=True,
                         num_classes=0, global_pool="")

    @property
    def num_tokens(self) -> int:
        """Tokens per TTF stack: the class token plus (img_size / patch_size)²."""
        return 1 + self.patch_embed.num_patches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, img_size, img_size) in [0, 1] → all tokens after the final LayerNorm,
        (B, 1 + (img_size / patch_size)², embed_dim)."""
        return self.forward_features(x)
