"""Train an OpenOCR scene-text recogniser on STR LMDBs and evaluate it on STR LMDB test sets.

    python train_str.py --config configs/str/train_str_cfg.py --cfg-options 'train_data=[output/textssr_f/lmdb]' \
        'test_data={ic13:data/str/ic13}' output_dir=output/str/textssr_f
    python train_str.py --config configs/str/tiny/train_str_cfg.py          (after make str-demo's data)
    torchrun --nproc_per_node 8 train_str.py --config ...                   (OpenOCR's own multi-GPU launch)

Rerun the same command after any stop: it resumes from OpenOCR's latest.pth. Needs `make install-str`.
See docs/str.md.
"""
import os

from textssr.config.checks import run_script
from textssr.str.settings import StrSettings


def main(argv=None):
    from textssr.str import openocr_glue

    cfg = run_script(lambda: StrSettings.parse(argv, __doc__.splitlines()[0], "configs/str/train_str_cfg.py"))
    resolved = run_script(lambda: openocr_glue.check_config(cfg))
    results = run_script(lambda: openocr_glue.train_and_evaluate(resolved))
    if results:
        print(f"metrics → {os.path.join(resolved['output_dir'], 'metrics.json')}")


if __name__ == "__main__":
    main()
