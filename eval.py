"""Score generated text crops with an OCR model: `python eval.py --results output/ic13`.

Reads an infer.py output folder (labels.json + region/ crops, optional gt/ and instances.json),
recognises every crop with PP-OCRv4, writes metrics.json (Sen.ACC, NED, case-insensitive variants,
per-language figures, the gt/ ceiling, per-item readings) and contact_sheet.png beside it, and prints
a table.
"""
import argparse
import sys
from pathlib import Path

from textssr.config.checks import check_output_dir, run_script
from textssr.config import ConfigError
from textssr.utils.errors import InputError, exit_on_input_error
from textssr.eval import EvalError, Recognizer, evaluate_results, format_table, open_results, write_contact_sheet, \
    write_metrics
from textssr.eval.evaluate import METRICS_FILE, SHEET_FILE


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="infer.py output folder (labels.json, region/, gt/)")
    parser.add_argument("--out", default=None, help=f"metrics file (default: RESULTS/{METRICS_FILE})")
    parser.add_argument("--batch-size", type=int, default=32, help="crops per recognition batch")
    parser.add_argument("--no-sheet", action="store_true", help=f"do not write {SHEET_FILE} (beside the metrics file)")
    parser.add_argument("--sheet-max", type=int, default=48, help="most items shown on the contact sheet")
    parser.add_argument("--strict", action="store_true", help="fail on a missing/unreadable crop instead of skipping it")
    return parser.parse_args(argv)


def check_out(path: Path) -> Path:
    """``--out`` must be a file path that can be written: not a folder, its folder creatable."""
    if path.is_dir():
        raise ConfigError(f"--out {path}: is a folder; give a file path such as {path / METRICS_FILE}")
    check_output_dir(str(path.parent or Path(".")), "--out's folder")
    return path


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        if args.batch_size < 1 or args.sheet_max < 1:
            raise ConfigError("--batch-size and --sheet-max must be >= 1")
        open_results(args.results)  # fail on a wrong folder before loading the model
        out = check_out(Path(args.out) if args.out else Path(args.results) / METRICS_FILE)
    except InputError as exc:
        exit_on_input_error(exc)
    try:
        metrics = run_script(lambda: evaluate_results(args.results, Recognizer(batch_size=args.batch_size),
                                                      strict=args.strict), resumable=False)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1)
    out = write_metrics(metrics, out)
    print(format_table(metrics))
    print(f"metrics: {out}")
    if not args.no_sheet:
        print(f"contact sheet: {write_contact_sheet(metrics, out.parent / SHEET_FILE, args.sheet_max)}")


if __name__ == "__main__":
    main()
