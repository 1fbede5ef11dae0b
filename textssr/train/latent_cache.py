"""The CDM latent cache (``latent_cache=True``): the VAE latents of each training sample, encoded the first time
its dataset index is seen and reused in later epochs.

Valid only when a sample's crop is the same every epoch (``region_placement="center"``) and its latents are
deterministic (``vae_latents="mode"``): :func:`check_latent_cache` refuses any other config at start-up.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch

from textssr.config import ConfigError

INPUTS = ("image", "masked_image", "glyph")


def check_latent_cache(cfg) -> None:
    if cfg.latent_cache and (cfg.vae_latents != "mode" or cfg.region_placement != "center"):
        raise ConfigError(f"latent_cache=True reuses a sample's latents every epoch, so its crop and latents must not "
                          f"change: set region_placement=\"center\" and vae_latents=\"mode\" (now "
                          f"{cfg.region_placement!r}, {cfg.vae_latents!r}), or latent_cache=False")


class LatentCache(dict):
    """{dataset index: (3, C, h, w) latents of image, masked_image and glyph}, kept in host memory — a GPU's memory
    is for the model. With ``pin`` (the training device is a GPU) each batch is gathered into pinned memory, so that
    its copy to the GPU is asynchronous. ``batch["index"]`` stays on the host
    (:func:`textssr.train.data.to_device`): reading it costs no device sync."""

    pin = False

    def latents(self, batch: dict, encode: Callable[[torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """The (image, masked_image, glyph) latents of ``batch``, on its device; the indices not cached yet are
        encoded together in one ``encode`` call (of their inputs concatenated in that order)."""
        keys = batch["index"].tolist()
        new = [i for i, key in enumerate(keys) if key not in self and key not in keys[:i]]
        if new:
            z = encode(torch.cat([batch[k][new] for k in INPUTS])).cpu()
            for j, per_input in enumerate(zip(*z.chunk(3))):
                self[keys[new[j]]] = torch.stack(per_input)
        stacked = torch.stack([self[key] for key in keys])  # (B, 3, C, h, w), host memory
        if self.pin:
            stacked = stacked.pin_memory()
        return stacked.to(batch["image"].device, non_blocking=True).unbind(1)
