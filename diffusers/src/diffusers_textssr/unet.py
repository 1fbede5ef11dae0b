"""TextSSR's conditional UNet: SD 2.1's ``UNet2DConditionModel`` with a 13-channel ``conv_in`` and the TTF
encoder inside (method.md §4).

The original project edited diffusers' ``UNet2DConditionModel`` in place; here it is a subclass, and
:meth:`TextSSRUNet2DConditionModel.from_pretrained` reads three kinds of folder:

``textssr``   written by this class (``config.json`` says ``TextSSRUNet2DConditionModel``);
``original``  written by the original TextSSR code: ``config.json`` says ``UNet2DConditionModel`` with
              ``in_channels: 4``, the weights hold a 13-channel ``conv_in`` and timm-named ``ttf_net.*`` keys;
``sd``        a plain SD 2.1 ``unet/`` folder (4-channel ``UNet2DConditionModel``): initialisation for training,
              see :meth:`TextSSRUNet2DConditionModel.from_sd_unet`.
"""
from __future__ import annotations

import inspect
import json
import math
import os
from typing import Dict, Optional, Tuple, Union

import torch
from diffusers import ModelMixin  # noqa: F401 — diffusers' pipeline loader finds a custom component's load
from diffusers import UNet2DConditionModel  # method by looking up ModelMixin in the component's module
from diffusers.configuration_utils import register_to_config
from diffusers.utils import logging
from diffusers.utils.constants import (SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_INDEX_NAME,
                                       WEIGHTS_NAME)
from diffusers.utils.hub_utils import _add_variant

from .ttf_encoder import TTFEncoder

logger = logging.get_logger(__name__)

# SD 2.1's UNet (stabilityai/stable-diffusion-2-1, unet/config.json) where it differs from diffusers' defaults,
# with TextSSR's 13 input channels and the sample size of 256-pixel regions. TextSSRUNet2DConditionModel() is
# therefore the paper's UNet.
UNET_DEFAULTS = dict(in_channels=13, sample_size=32, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                     use_linear_projection=True, upcast_attention=True)
CONV_IN_INITS = ("sd", "random")
LAYOUTS = ("textssr", "original", "sd")


def _with_unet_parameters(init):
    """Give ``init(self, *, ttf_..., **unet_kwargs)`` the full signature UNet2DConditionModel's parameters (with
    UNET_DEFAULTS) followed by the ``ttf_*`` ones.

    diffusers takes a model's config keys from its ``__init__`` signature (``register_to_config``,
    ``from_config``), so this is what makes every upstream key a config key of the subclass without repeating
    fifty parameters, and keeps doing so when upstream adds one.
    """
    base = inspect.signature(UNet2DConditionModel.__init__)
    params = [p.replace(default=UNET_DEFAULTS.get(name, p.default)) for name, p in base.parameters.items()]
    params += [p for name, p in inspect.signature(init).parameters.items() if name.startswith("ttf_")]
    init.__signature__ = base.replace(parameters=params)
    return init


class TextSSRUNet2DConditionModel(UNet2DConditionModel):
    """UNet2DConditionModel whose cross-attention context comes from its own TTF encoder (``ttf_net``).

    ``sample``: (B, in_channels, h, w) = [noisy latent (4), masked_image latent (4), glyph latent (4), mask (1)].
    ``encoder_hidden_states``: the raw TTF stack (B, ttf_in_chans, ttf_img_size, ttf_img_size) in [0, 1];
    ``ttf_net`` turns it into (B, 1 + (ttf_img_size / ttf_patch_size)², ttf_embed_dim) tokens, so
    ``cross_attention_dim`` must equal ``ttf_embed_dim``.

    Every ``UNet2DConditionModel`` argument is accepted (keyword only); defaults are SD 2.1's with
    ``in_channels=13``. The ``ttf_*`` arguments are the TTF encoder's geometry, stored in ``config.json``.
    """

    @register_to_config
    @_with_unet_parameters
    def __init__(self, *, ttf_img_size: int = 64, ttf_patch_size: int = 8, ttf_in_chans: int = 25,
                 ttf_embed_dim: int = 1024, ttf_depth: int = 6, ttf_num_heads: int = 8, **unet_kwargs):
        unet_kwargs = {**UNET_DEFAULTS, **unet_kwargs}
        cross = unet_kwargs["cross_attention_dim"]
        if any(int(d) != ttf_embed_dim for d in (cross if isinstance(cross, (list, tuple)) else [cross])):
            raise ValueError(f"cross_attention_dim={cross} must equal ttf_embed_dim={ttf_embed_dim}: the TTF "
                             "encoder's tokens are the UNet's cross-attention context")
        super().__init__(**unet_kwargs)
        self.ttf_net = TTFEncoder(img_size=ttf_img_size, patch_size=ttf_patch_size, in_chans=ttf_in_chans,
                                  embed_dim=ttf_embed_dim, depth=ttf_depth, num_heads=ttf_num_heads)

    def forward(self, sample: torch.Tensor, timestep: Union[torch.Tensor, float, int],
                encoder_hidden_states: Optional[torch.Tensor] = None, ttf_context: Optional[torch.Tensor] = None,
                **kwargs):
        """``encoder_hidden_states`` is the raw TTF stack (B, ttf_in_chans, ttf_img_size, ttf_img_size), as in the
        original; or ``ttf_context``, what :meth:`encode_ttf` made of it (a sampler encodes it once, not at every
        step). Every other argument is UNet2DConditionModel's."""
        if ttf_context is None:
            if encoder_hidden_states is None:
                raise ValueError("give encoder_hidden_states (the TTF stack) or ttf_context (encode_ttf's tokens)")
            ttf_context = self.encode_ttf(encoder_hidden_states)
        return super().forward(sample, timestep, ttf_context, **kwargs)

    def encode_ttf(self, ttf_images: torch.Tensor) -> torch.Tensor:
        """The TTF stack (B, ttf_in_chans, ttf_img_size, ttf_img_size) in [0, 1] → the cross-attention context
        (B, 1 + (ttf_img_size / ttf_patch_size)², ttf_embed_dim)."""
        expected = (self.config.ttf_in_chans, self.config.ttf_img_size, self.config.ttf_img_size)
        if ttf_images.ndim != 4 or tuple(ttf_images.shape[1:]) != expected:
            raise ValueError(f"encoder_hidden_states must be the TTF stack (B, {', '.join(map(str, expected))}) "
                             f"(max_len, ttf_size, ttf_size); got {tuple(ttf_images.shape)}")
        return self.ttf_net(ttf_images.to(self.dtype))

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], conv_in_init: str = "sd",
                        init_seed: int = 0, **kwargs) -> "TextSSRUNet2DConditionModel":
        """Load a ``textssr``, ``original`` or ``sd`` folder (module docstring); the layout is detected.

        Config overrides work as in diffusers: ``from_pretrained(path, ttf_embed_dim=64, ttf_depth=2,
        ttf_num_heads=2)`` loads an original-layout folder whose TTF encoder is not the default one (its
        config.json cannot say so). A geometry that contradicts the weights is a one-line ValueError naming the
        overrides to pass. ``conv_in_init`` and ``init_seed`` matter only for ``sd`` folders
        (see :meth:`from_sd_unet`). Only local folders are inspected; other sources load as ``textssr`` folders.
        """
        folder = os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        if not os.path.isdir(folder):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        layout = unet_layout(folder, kwargs.get("variant"))
        if layout == "sd":
            return cls.from_sd_unet(pretrained_model_name_or_path, conv_in_init=conv_in_init, init_seed=init_seed,
                                    **kwargs)
        shapes = checkpoint_shapes(folder, kwargs.get("variant"))
        config = cls.load_config(folder)
        if layout == "original":
            # Its config.json says 4 input channels; the weights know better. Keys it lacks mean upstream's
            # defaults, not this class's SD 2.1 ones.
            kwargs.setdefault("in_channels", shapes["conv_in.weight"][1])
            upstream = inspect.signature(UNet2DConditionModel.__init__).parameters
            for key in UNET_DEFAULTS.keys() - config.keys():
                kwargs.setdefault(key, upstream[key].default)
        defaults = inspect.signature(cls.__init__).parameters
        requested = {k: kwargs.get(k, config.get(k, defaults[k].default)) for k in defaults if k.startswith("ttf_")}
        _check_ttf_geometry(folder, requested, ttf_geometry_from_weights(shapes))
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_sd_unet(cls, sd_unet: Union[str, os.PathLike, UNet2DConditionModel], conv_in_init: str = "sd",
                     init_seed: int = 0, **kwargs) -> "TextSSRUNet2DConditionModel":
        """Initialise from a plain SD UNet (a folder, or a loaded ``UNet2DConditionModel``), method.md §4.

        Every SD weight whose shape fits is copied. ``conv_in`` gets 3 × latent + 1 = 13 input channels:
        ``conv_in_init="sd"`` (default) puts SD's weights in input channels 0–3 (the noisy latent), zeros in the
        other 9, and keeps SD's bias — at step 0 the UNet is SD's, blind to the conditions; ``"random"``
        re-initialises the whole ``conv_in`` as the original did. ``ttf_net`` is new. Fresh parameters are drawn
        under ``torch.manual_seed(init_seed)`` without touching the global RNG, so every process (and every
        run) gets the same start.

        ``kwargs``: ``ttf_*`` geometry (``ttf_embed_dim`` defaults to SD's ``cross_attention_dim``; a different
        one re-initialises the cross-attention key/value projections, which then no longer fit), ``torch_dtype``,
        and loading arguments for a folder (``subfolder``, ``variant``, ...).
        """
        if conv_in_init not in CONV_IN_INITS:
            raise ValueError(f"conv_in_init={conv_in_init!r}; choose one of {CONV_IN_INITS}")
        ttf = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("ttf_")}
        torch_dtype = kwargs.pop("torch_dtype", None)
        if not isinstance(sd_unet, UNet2DConditionModel):
            sd_unet = UNet2DConditionModel.from_pretrained(sd_unet, **kwargs)
        elif kwargs:
            raise TypeError(f"loading arguments {sorted(kwargs)} need a folder, not a loaded model")
        if isinstance(sd_unet, TextSSRUNet2DConditionModel):
            raise ValueError("from_sd_unet takes a plain SD UNet; this one is already a TextSSR UNet")
        config = {k: v for k, v in sd_unet.config.items() if not k.startswith("_")}
        ttf.setdefault("ttf_embed_dim", config["cross_attention_dim"])
        config.update(ttf, cross_attention_dim=ttf["ttf_embed_dim"], in_channels=3 * config["out_channels"] + 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = cls.from_config(config)

        sd_state, own = sd_unet.state_dict(), model.state_dict()
        sd_conv_w, sd_conv_b = sd_state.pop("conv_in.weight"), sd_state.pop("conv_in.bias")
        fits = {k: v for k, v in sd_state.items() if k in own and own[k].shape == v.shape}
        if conv_in_init == "sd":
            weight = torch.zeros_like(own["conv_in.weight"])
            weight[:, :sd_conv_w.shape[1]] = sd_conv_w
            fits.update({"conv_in.weight": weight, "conv_in.bias": sd_conv_b})
        model.load_state_dict(fits, strict=False)
        left_out = sorted(set(sd_state) - set(fits))
        if left_out:
            logger.warning(f"{len(left_out)} SD UNet tensors do not fit and stay freshly initialised, "
                           f"e.g. {left_out[:3]}")
        return model.to(torch_dtype) if torch_dtype is not None else model


# ---------------------------------------------------------------------------------------------- folder inspection


def checkpoint_shapes(folder: str, variant: Optional[str] = None) -> Dict[str, Tuple[int, ...]]:
    """{tensor name: shape} of the diffusers weights in ``folder`` (safetensors or .bin, single or sharded),
    read without loading the tensors."""
    for single, index in ((SAFETENSORS_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        single = os.path.join(folder, _add_variant(single, variant))
        index = os.path.join(folder, _add_variant(index, variant))
        if os.path.isfile(single):
            files = [single]
        elif os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                files = [os.path.join(folder, name) for name in sorted(set(json.load(f)["weight_map"].values()))]
        else:
            continue
        shapes = {}
        for path in files:
            shapes.update(_file_shapes(path))
        return shapes
    raise FileNotFoundError(f"{folder} holds no diffusion_pytorch_model weights (.safetensors or .bin)")


def _file_shapes(path: str) -> Dict[str, Tuple[int, ...]]:
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    return {k: tuple(v.shape) for k, v in state.items()}


def unet_layout(folder: str, variant: Optional[str] = None) -> str:
    """Which of LAYOUTS the UNet folder is (module docstring); a ValueError when it is no UNet at all."""
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{folder} holds no config.json (expected a diffusers UNet folder)")
    with open(config_path, encoding="utf-8") as f:
        class_name = json.load(f).get("_class_name")
    if class_name == TextSSRUNet2DConditionModel.__name__:
        return "textssr"
    if class_name != UNet2DConditionModel.__name__:
        raise ValueError(f"{folder} holds a {class_name}, not a UNet2DConditionModel (a vae/ or scheduler/ folder?)")
    shapes = checkpoint_shapes(folder, variant)
    return "original" if any(k.startswith("ttf_net.") for k in shapes) else "sd"


def ttf_geometry_from_weights(shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, int]:
    """The ``ttf_*`` geometry that tensor shapes determine (all but ``ttf_num_heads``)."""
    embed_dim, in_chans, patch, _ = shapes["ttf_net.patch_embed.proj.weight"]
    grid = math.isqrt(shapes["ttf_net.pos_embed"][1] - 1)
    depth = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("ttf_net.blocks."))
    return dict(ttf_img_size=grid * patch, ttf_patch_size=patch, ttf_in_chans=in_chans, ttf_embed_dim=embed_dim,
                ttf_depth=depth)


def _check_ttf_geometry(folder: str, requested: dict, found: dict) -> None:
    wrong = {k: v for k, v in found.items() if int(requested[k]) != v}
    if wrong:
        have = ", ".join(f"{k}={v}" for k, v in wrong.items())
        said = ", ".join(f"{k}={requested[k]}" for k in wrong)
        raise ValueError(f"{folder}: its ttf_net weights have {have} but the config gives {said}; pass the "
                         f"geometry as overrides, e.g. from_pretrained(path, {have}, ttf_num_heads=<heads used>)")
