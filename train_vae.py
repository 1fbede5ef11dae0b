"""Stage 1 of TextSSR: fine-tune the VAE on text-region crops.

    accelerate launch --num_processes 8 train_vae.py --config configs/train_vae_cfg.py [--cfg-options key=value ...]
"""

from textssr.config.checks import run_script
from textssr.train.settings import TrainSettings
from textssr.train import train



def main(argv=None) -> None:
    run_script(lambda: train(TrainSettings.parse(argv, __doc__, "configs/train_vae_cfg.py"), "vae"))


if __name__ == "__main__":
    main()
