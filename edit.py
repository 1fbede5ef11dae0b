"""Edit the text of any photo: `python edit.py --image PHOTO --polygon x1,y1,...,x4,y4 --text NEW [--out OUT.png]`.

    python edit.py --image photo.jpg --polygon 377,117,463,117,465,130,378,130 --text "Hello World"
    python edit.py --image photo.jpg --find Carpark --text Parking --num-variants 4
    python edit.py --list photo.jpg
    python edit.py ... --config configs/infer_cfg.py --cfg-options seed=7 num_inference_steps=20 scheduler=ddpm

Writes the whole photo with each region repainted (textssr/edit/); pixels outside the edited areas are unchanged.
"""
import sys

from textssr.config.checks import run_script
from textssr.edit.command import main

if __name__ == "__main__":
    sys.exit(run_script(main, resumable=False))
