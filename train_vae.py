"""Stage 1 of TextSSR: fine-tune the VAE on text-region crops.

    accelerate launch --num_processes 8 train_vae.py --config configs/train_vae_cfg.py [--cfg-options key=value ...]
"""
from textssr.config import ConfigError, exit_on_config_error, parse_config
from textssr.train import train


def main(argv=None) -> None:
    try:
        train(parse_config(argv, description=__doc__, default_config="configs/train_vae_cfg.py"), "vae")
    except ConfigError as exc:
        exit_on_config_error(exc)


if __name__ == "__main__":
    main()
