"""Build TextSSR-F: permuted texts placed into real regions, OCR-screened, written as an STR LMDB.

    python synthesize.py --config configs/synth_cfg.py [--cfg-options key=value ...]
    accelerate launch --num_processes 8 synthesize.py --config configs/synth_cfg.py
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 synthesize.py ...   (CPU ranks)

Restart the same command after any crash: it resumes where it stopped. See textssr/synth/runner.py.
"""
from textssr.config import ConfigError, exit_on_config_error, parse_config
from textssr.synth.runner import synthesize


def main(argv=None):
    try:
        cfg = parse_config(argv, description=__doc__.splitlines()[0], default_config="configs/synth_cfg.py")
        stats = synthesize(cfg)
    except ConfigError as exc:
        exit_on_config_error(exc)
    if stats is not None:
        print(f"kept {stats['kept']} of {stats['generated']} crops ({stats['crops_per_s']} crops/s) "
              f"→ {stats['lmdb']}; stats in {cfg.output_dir}/stats.json")


if __name__ == "__main__":
    main()
