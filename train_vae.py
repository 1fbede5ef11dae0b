"""Stage 1 of TextSSR: fine-tune the VAE on text-region crops.

    accelerate launch --num_processes 8 train_vae.py --config configs/train_vae_cfg.py [--cfg-options key=value ...]
"""
import os

from textssr.config.checks import run_script
from textssr.config import parse_config
from textssr.train import train

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "train_vae_cfg.py")


def main(argv=None) -> None:
    run_script(lambda: train(parse_config(argv, description=__doc__, default_config="configs/train_vae_cfg.py",
                                          schema=SCHEMA), "vae"))


if __name__ == "__main__":
    main()
