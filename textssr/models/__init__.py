"""Build and load the models of every stage: VAE, TextSSR UNet, scheduler (see ``loading`` and ``arch``)."""
from textssr.models.arch import SD21_SCHEDULER_CONFIG, SD21_VAE_ARCH
from textssr.models.loading import (SCHEDULERS, TIMESTEP_SPACINGS, cast_model, load_scheduler, load_unet, load_vae,
                                    resolve_model_dir, scheduler_class)

__all__ = ["SD21_SCHEDULER_CONFIG", "SD21_VAE_ARCH", "SCHEDULERS", "TIMESTEP_SPACINGS", "cast_model", "load_scheduler",
           "load_unet", "load_vae", "resolve_model_dir", "scheduler_class"]
