"""CDM steps 1 and 2 of TextSSR: train the 13-channel conditional UNet (the VAE frozen).

    accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step1_cfg.py
    accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step2_cfg.py
"""
import os

from textssr.config.checks import run_script
from textssr.config import parse_config
from textssr.train import train

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "train_diff_step1_cfg.py")


def main(argv=None) -> None:
    run_script(lambda: train(parse_config(argv, description=__doc__,
                                          default_config="configs/train_diff_step1_cfg.py", schema=SCHEMA), "cdm"))


if __name__ == "__main__":
    main()
