"""Build TextSSR-F: permuted texts placed into real regions, OCR-screened, written as an STR LMDB.

    python synthesize.py --config configs/synth_cfg.py [--cfg-options key=value ...]
    accelerate launch --num_processes 8 synthesize.py --config configs/synth_cfg.py
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 synthesize.py ...   (CPU ranks)

Restart the same command after any crash: it resumes where it stopped. See textssr/synth/runner.py.
"""
import sys

from textssr.config.checks import run_script
from textssr.synth.settings import SynthSettings
from textssr.data import SkipSample
from textssr.data.skips import brief
from textssr.synth.runner import synthesize



def main(argv=None):
    cfg = run_script(lambda: SynthSettings.parse(argv, __doc__.splitlines()[0], "configs/synth_cfg.py"))
    try:
        stats = run_script(lambda: synthesize(cfg))
    except SkipSample as exc:  # strict=True stops at the first bad region
        print(f"error: bad source region ({exc}); fix it, or set strict=False to skip and count such regions",
              file=sys.stderr)
        raise SystemExit(1)
    if stats is not None:
        print(f"kept {stats['kept']} of {stats['generated']} crops ({stats['crops_per_s']} crops/s) "
              f"→ {stats['lmdb']}; stats in {cfg.output_dir}/stats.json\n"
              f"rejected: {brief(stats['rejected'])}; skipped: {brief(stats['skipped'])}; "
              f"filtered: {brief(stats['filtered'])}")
        if stats["num_samples"] == 0:
            print(f"error: no crop was kept: {stats['lmdb']} is empty (see {cfg.output_dir}/stats.json)",
                  file=sys.stderr)
            raise SystemExit(1)


if __name__ == "__main__":
    main()
