"""Generation set-up shared by ``infer.py``, ``synthesize.py``, ``edit.py`` and the app, one module per job:

    run.py        settle a run: checkpoints, scheduler folder, condition sizes, precision (:func:`resolve_run`)
    memory.py     will a batch fit on the device (:func:`check_memory`)
    resume.py     the one resume rule (:func:`resume_record`, :func:`check_resume`)
    pipeline.py   load the pipeline once (:func:`load_pipeline`)
    sampling.py   denoise batches into uint8 crops (:func:`denoise`)
"""
from textssr.generation.memory import available_memory, check_memory, estimate_memory
from textssr.generation.pipeline import load_pipeline, settle_precision
from textssr.generation.resume import check_resume, resume_record
from textssr.generation.run import Run, condition_sizes, resolve_run
from textssr.generation.sampling import crop_box, denoise, real_region, to_uint8

__all__ = ["Run", "resolve_run", "condition_sizes", "available_memory", "check_memory", "estimate_memory",
           "check_resume", "resume_record", "load_pipeline", "settle_precision", "crop_box", "denoise",
           "real_region", "to_uint8"]
