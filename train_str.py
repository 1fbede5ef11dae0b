"""Train an OpenOCR scene-text recogniser on STR LMDBs and evaluate it on STR LMDB test sets.

    python train_str.py --config configs/str/train_str_cfg.py --cfg-options 'train_data=[output/textssr_f/lmdb]' \
        'test_benchmarks=[common6]' output_dir=output/str/textssr_f
    python train_str.py --config configs/str/tiny/train_str_cfg.py          (after make str-demo's data)
    torchrun --nproc_per_node 8 train_str.py --config ...                   (one run over 8 processes)
    python train_str.py --config ... --eval-only [--checkpoint PATH]        (score a checkpoint, no training)

Rerun the same command after any stop: it resumes from OpenOCR's latest.pth. Needs `make install-str`.
See docs/str.md.
"""
import argparse

from textssr.config.checks import run_script
from textssr.config.loading import add_config_args, load_config
from textssr.str.settings import StrSettings


def parse(argv=None):
    parser = add_config_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]),
                             "configs/str/train_str_cfg.py")
    parser.add_argument("--eval-only", action="store_true",
                        help="no training: score a checkpoint on the configured test sets and write metrics.json")
    parser.add_argument("--checkpoint", default=None,
                        help="with --eval-only: the checkpoint to score (default: <output_dir>/latest.pth); ours "
                             "or OpenOCR's released weights for the configured openocr_config")
    args = parser.parse_args(argv)
    if args.checkpoint and not args.eval_only:
        parser.error("--checkpoint goes with --eval-only (a training resumes from <output_dir>/latest.pth)")
    cfg = StrSettings.from_config(load_config(args.config, args.cfg_options, schema=StrSettings.schema_path()))
    return cfg, args


def main(argv=None):
    from textssr.str import openocr_glue

    cfg, args = run_script(lambda: parse(argv))
    resolved = run_script(lambda: openocr_glue.check_config(cfg, args.eval_only, args.checkpoint))
    run_script(lambda: openocr_glue.run(resolved, eval_only=args.eval_only))


if __name__ == "__main__":
    main()
