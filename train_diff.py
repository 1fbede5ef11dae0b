"""CDM steps 1 and 2 of TextSSR: train the 13-channel conditional UNet (the VAE frozen).

    accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step1_cfg.py
    accelerate launch --num_processes 8 train_diff.py --config configs/train_diff_step2_cfg.py
"""

from textssr.config.checks import run_script
from textssr.train.settings import CDMSettings
from textssr.train import train



def main(argv=None) -> None:
    run_script(lambda: train(CDMSettings.parse(argv, __doc__, "configs/train_diff_step1_cfg.py"), "cdm"))


if __name__ == "__main__":
    main()
