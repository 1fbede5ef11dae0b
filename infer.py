"""Synthesize the text regions of a benchmark: `python infer.py [--config configs/infer_cfg.py]`.

    python infer.py --cfg-options bench=./benchmark/ic15/test.json output_dir=./output/ic15
    accelerate launch --num_processes 8 infer.py --config configs/infer_cfg.py

Writes <output_dir>/{local,region,gt}/<i>.png, labels.json, instances.json and meta.json (see
textssr/infer/outputs.py). Re-running the same command resumes: finished items are kept.
"""
import sys

from textssr.config.checks import run_script
from textssr.infer.settings import InferSettings
from textssr.data import SkipSample
from textssr.infer import run_inference, summary



def main(argv=None):
    cfg = run_script(lambda: InferSettings.parse(argv, __doc__.splitlines()[0], "configs/infer_cfg.py"))
    try:  # a bench that leaves nothing to generate: one line, exit status 1 (run_script)
        meta = run_script(lambda: run_inference(cfg))
    except SkipSample as exc:  # strict=True stops at the first bad instance
        print(f"error: bad bench instance ({exc}); fix it, or set strict=False to skip and count such instances",
              file=sys.stderr)
        raise SystemExit(1)
    if meta is not None:
        print(summary(meta, cfg.output_dir))


if __name__ == "__main__":
    main()
