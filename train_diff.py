"""CDM steps 1 and 2 of TextSSR: train the 13-channel conditional UNet (the VAE frozen).

    accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step1_cfg.py
    accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step2_cfg.py
"""
from textssr.config import ConfigError, exit_on_config_error, parse_config
from textssr.train import train


def main(argv=None) -> None:
    try:
        train(parse_config(argv, description=__doc__, default_config="configs/train_diff_step1_cfg.py"), "cdm")
    except ConfigError as exc:
        exit_on_config_error(exc)


if __name__ == "__main__":
    main()
