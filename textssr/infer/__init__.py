"""Inference on a benchmark: bench → samples → TextSSRPipeline → local/ region/ gt/ labels.json meta.json."""
from textssr.infer.runner import NothingGenerated, instance_seeds, run_inference, summary, validate

__all__ = ["NothingGenerated", "instance_seeds", "run_inference", "summary", "validate"]
