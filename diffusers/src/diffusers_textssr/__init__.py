"""TextSSR's extension of 🤗 diffusers: only what TextSSR adds, as subclasses of upstream classes.

- :class:`TTFEncoder` — the ViT that encodes the per-character TTF stack (timm ``VisionTransformer``).
- :class:`TextSSRUNet2DConditionModel` — SD 2.1's UNet with a 13-channel ``conv_in`` and the TTF encoder inside;
  loads its own folders, the original TextSSR code's folders, and plain SD UNet folders (initialisation).
- :class:`TextSSRPipeline` — the conditional denoising loop (no prompt, no CFG), any diffusers scheduler.
"""
from .pipeline import TextSSRPipeline, TextSSRPipelineOutput
from .ttf_encoder import TTFEncoder
from .unet import CONV_IN_INITS, LAYOUTS, TextSSRUNet2DConditionModel, unet_layout

__all__ = ["TTFEncoder", "TextSSRUNet2DConditionModel", "TextSSRPipeline", "TextSSRPipelineOutput", "unet_layout",
           "CONV_IN_INITS", "LAYOUTS"]
