"""Training: the one loop (``loop.train``) shared by the VAE fine-tune and the two CDM steps."""
from textssr.train.loop import train

__all__ = ["train"]
