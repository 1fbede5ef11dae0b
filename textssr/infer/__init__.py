"""Inference on a benchmark: bench → samples → TextSSRPipeline → local/ region/ gt/ labels.json meta.json."""
from textssr.infer.runner import NothingGenerated, bench_numbers, instance_seeds, run_inference, summary, validate

__all__ = ["NothingGenerated", "bench_numbers", "instance_seeds", "run_inference", "summary", "validate"]
