"""Inference on a benchmark: bench → samples → TextSSRPipeline → local/ region/ gt/ labels.json meta.json.

Numbering. Instance ``i`` is the i-th annotation of the bench JSON (images and their annotations in file order, bad
ones included), so names never change: skipped instances leave gaps.

Determinism. Everything random about instance ``i`` comes from generators seeded by ``(seed, i)``: the crop window
(``region_placement="random"``) and the initial latents and sampler noise (drawn on the CPU). Results therefore do
not depend on batch size, process count or resumes.

Scale. Under ``accelerate launch --num_processes N`` rank ``r`` owns the instances ``r, r+N, r+2N, …`` and writes
their files; after a barrier rank 0 rebuilds labels.json and instances.json from the finished files and writes
meta.json with every rank's counts and timings.

Resume. Rerunning the same command keeps the finished items of unchanged instances and generates the rest; a rerun
whose settings differ from those meta.json recorded at the start (another checkpoint, seed, …) is refused.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from accelerate.utils import gather_object
from tqdm import tqdm

from textssr.runtime import distributed
from textssr.config.checks import NothingToDo, check_output_dir
from textssr.config import ConfigError, require_path
from textssr.utils.jsonio import write_json
from textssr.data import SkipSample, mask_bbox
from textssr.data.factory import BENCH_FILE, anyword_json, dataset_options, open_dataset
from textssr.data.seeding import item_rng, item_torch_generator
from textssr.data.skips import TEXT_TRUNCATED, brief
from textssr.generation import (Run, check_memory, check_resume, denoise, load_pipeline, real_region, resolve_run,
                                resume_record)
from textssr.infer.instance_key import instance_key
from textssr.infer import outputs
from textssr.runtime.precision import dtype_name
from textssr.config.settings import require_settings
from textssr.infer.settings import InferSettings


class NothingGenerated(NothingToDo):
    """The bench leaves no instance to generate (every one filtered or skipped), or the run ended with no finished
    item at all."""


def resolve_bench(bench: str) -> str:
    """The AnyWord JSON named by ``bench`` (a JSON file, or a folder holding test.json)."""
    require_path(bench, "bench", "give an AnyWord JSON or a folder holding test.json, e.g. "
                 "--cfg-options bench=./benchmark/ic13/test.json")
    path = anyword_json(bench)
    if path is None:
        raise ConfigError(f"bench: folder {bench} holds no {BENCH_FILE} — name the AnyWord JSON itself")
    return path


def validate(cfg, device: torch.device) -> Tuple[Run, str]:
    """Check every config value before a model is built (a ConfigError names the key and the fix), and that a batch
    fits in ``device``'s memory; returns the resolved run and the bench JSON."""
    check_output_dir(cfg.output_dir)
    bench_json = resolve_bench(cfg.bench)  # named first
    run = resolve_run(cfg, device.type == "cpu")
    check_memory(run, cfg.batch_size, device)
    return dataclasses.replace(run, resolved=dict(run.resolved, bench=os.path.abspath(bench_json))), bench_json


def instance_seeds(seed: int, number: int) -> Tuple[np.random.Generator, torch.Generator]:
    """(crop-window generator, initial-latent generator) of bench instance ``number``."""
    return item_rng(seed, number, stream=0), item_torch_generator(seed, number, stream=1)


@dataclass
class RankResult:
    """What one rank did in this run. ``timers``: build_s and write_s run in helper threads, overlapped with
    generate_s; wait_s is the time the main thread waited for a built batch."""
    rank: int
    finished_before: int = 0
    generated: int = 0
    loop_s: float = 0.0
    skipped: Counter = field(default_factory=Counter)
    timers: Counter = field(default_factory=Counter)


@dataclass
class Batch:
    """Built samples with their bench numbers, latent generators and instance keys; ``consumed``: the pending
    instances it took (skipped ones included)."""
    consumed: int = 0
    samples: List[dict] = field(default_factory=list)
    numbers: List[int] = field(default_factory=list)
    generators: List[torch.Generator] = field(default_factory=list)
    keys: List[str] = field(default_factory=list)


def build_batches(cfg, dataset, numbers: List[int], pending: List[int], result: RankResult,
                  keys: Dict[int, str]) -> Iterator[Batch]:
    """The :class:`Batch` es of the ``pending`` dataset indices; bad instances are counted in ``result.skipped``
    (raised when ``strict``)."""
    strict, batch_size = cfg.strict, cfg.batch_size
    cursor = 0
    while cursor < len(pending):
        started, batch = time.perf_counter(), Batch()
        while len(batch.samples) < batch_size and cursor < len(pending):
            k = pending[cursor]
            cursor += 1
            batch.consumed += 1
            placement_rng, latent_generator = instance_seeds(cfg.seed, numbers[k])
            try:
                batch.samples.append(dataset.build(k, rng=placement_rng))
            except SkipSample as exc:
                if strict:
                    raise
                result.skipped[exc.reason] += 1
                continue
            batch.numbers.append(numbers[k])
            batch.generators.append(latent_generator)
            batch.keys.append(keys[k])
        result.timers["build_s"] += time.perf_counter() - started
        yield batch


def write_batch(out_dir: str, batch: Batch, images: np.ndarray, result: RankResult) -> None:
    started = time.perf_counter()
    for image, sample, number, key in zip(images, batch.samples, batch.numbers, batch.keys):
        outputs.write_item(out_dir, number, image, real_region(sample), mask_bbox(sample["mask"]), key)
    result.timers["write_s"] += time.perf_counter() - started


def run_rank(cfg, run: Run, dataset, numbers: List[int], pipe, device, rank: int, world: int,
             show_progress: bool) -> RankResult:
    """Generate this rank's unfinished instances batch by batch. The next batch is built and the previous one
    written in helper threads while the current one denoises; an item's files appear once they are complete."""
    result = RankResult(rank)
    owned = [k for k in range(len(dataset)) if k % world == rank]
    keys = {k: instance_key(dataset, k, numbers[k]) for k in owned}  # what each instance is (a changed bench)
    pending = []
    for k in owned:
        if outputs.clean_item(cfg.output_dir, numbers[k], keys[k]):
            result.finished_before += 1
        else:
            pending.append(k)
    batches = build_batches(cfg, dataset, numbers, pending, result, keys)
    steps = cfg.num_inference_steps
    bar = tqdm(total=len(owned), initial=result.finished_before, unit="crop", dynamic_ncols=True,
               disable=not show_progress, desc=f"infer rank {rank}/{world}" if world > 1 else "infer")
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as builder, ThreadPoolExecutor(1) as writer:
        upcoming, written = builder.submit(next, batches, None), None
        while True:
            t0 = time.perf_counter()
            batch = upcoming.result()
            result.timers["wait_s"] += time.perf_counter() - t0
            if batch is None:
                break
            upcoming = builder.submit(next, batches, None)
            images = None
            if batch.samples:
                t1 = time.perf_counter()
                images = denoise(pipe, run, batch.samples, batch.generators, steps, device)
                result.timers["generate_s"] += time.perf_counter() - t1
                result.generated += len(batch.samples)
            if written is not None:
                written.result()  # surface a write error, keep at most one batch in flight
            written = writer.submit(write_batch, cfg.output_dir, batch, images, result) if images is not None else None
            bar.update(batch.consumed)
        if written is not None:
            written.result()
    result.loop_s = time.perf_counter() - started
    bar.close()
    return result


# ----------------------------------------------------------------------------------------------- merge


def library_versions() -> dict:
    def of(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return dict(python=platform.python_version(), cuda=torch.version.cuda,
                **{name: of(name) for name in ("textssr", "torch", "diffusers", "accelerate", "pillow", "numpy",
                                               "opencv-python-headless")})


def merge_meta(cfg, run: Run, results: List[RankResult], index_skips: Dict[str, int], filtered: Dict[str, int],
               num_instances: int, written: int, load_s: float, wall_s: float, device, scheduler) -> dict:
    skipped = Counter(index_skips)
    truncated = skipped.pop(TEXT_TRUNCATED, 0)  # counted by the dataset, but those instances are generated
    timers = Counter()
    for r in results:
        skipped.update(r.skipped)
        timers.update(r.timers)
    generated = sum(r.generated for r in results)
    loop_s = max(r.loop_s for r in results)  # ranks run side by side: the slowest one's loop
    return dict(
        complete=True, settings=resume_record(cfg, run),
        conditions=run.sizes(),
        checkpoints=dict(vae=os.path.abspath(run.vae_dir), unet=os.path.abspath(run.unet_dir),
                         scheduler=os.path.abspath(run.scheduler_dir) if run.scheduler_dir else "built-in SD 2.1"),
        scheduler=dict(name=cfg.scheduler, class_name=type(scheduler).__name__, config=dict(scheduler.config)),
        seed=cfg.seed, versions=library_versions(), device=str(device), processes=len(results),
        dtype=dtype_name(run.dtype), precision_choice=run.precision,
        mixed_precision=dict(setting=run.mixed.name, source=run.mixed.source) if run.mixed else None,
        counts=dict(indexed=num_instances, written=written, generated=generated,
                    kept_from_previous=sum(r.finished_before for r in results),
                    skipped=sum(skipped.values()), filtered=sum(filtered.values()), text_truncated=truncated),
        skipped=dict(sorted(skipped.items())), filtered=dict(sorted(filtered.items())),
        timings=dict(load_s=round(load_s, 3), loop_s=round(loop_s, 3), wall_s=round(wall_s, 3),
                     **{k: round(v, 3) for k, v in sorted(timers.items())}),
        crops_per_s=round(generated / loop_s, 3) if loop_s > 0 and generated else None,
    )


def run_inference(cfg: InferSettings) -> Optional[dict]:
    """Run (or resume) inference as ``cfg`` (textssr.infer.settings) says. Returns meta.json's dict on rank 0, None
    on the others.

    Raises ConfigError for a config that cannot work (before anything is written), SkipSample on a bad
    instance when ``strict``, and NothingGenerated when the bench leaves no instance (the filters and index-time
    skips removed all: before the models load) or no item at all could be written.
    """
    started = time.perf_counter()
    require_settings(cfg, InferSettings, "run_inference")
    state = distributed.process_state(cfg.device, cfg.ddp_timeout)
    with distributed.waiting(state, cfg.ddp_timeout, "ranks load the models and finish their shares unevenly"):
        return _run(cfg, state, started)


def check_previous(cfg, run) -> None:
    """Refuse (ConfigError) to continue a previous run of ``cfg.output_dir`` made with other settings."""
    previous = outputs.read_meta(cfg.output_dir)
    check_resume(previous and previous.get("settings", {}), resume_record(cfg, run), f"output_dir {cfg.output_dir}")


def _run(cfg, state, started: float) -> Optional[dict]:
    rank, world, device = state.process_index, state.num_processes, state.device
    run, bench_json = validate(cfg, device)
    # rank 0 reads (and checks) the previous run's record for all: ranks reading a shared disk each could see
    # different states
    distributed.rank_zero_decision(lambda: check_previous(cfg, run))
    dataset = open_dataset(bench_json, **dataset_options(cfg, allow_images_outside_root=cfg.allow_images_outside_root, **run.sizes()))
    filtered = dict(dataset.filtered)
    if len(dataset) == 0:
        skipped = {k: v for k, v in dataset.skip_counts.items() if k != TEXT_TRUNCATED}
        raise NothingGenerated(f"nothing to generate: no instance of {bench_json} is left (filtered: "
                               f"{brief(filtered)}; skipped: {brief(skipped)})" +
                               (f"; no annotation has language={cfg.language!r}" if filtered else ""))
    pipe, run = load_pipeline(run, cfg, device)
    numbers = list(dataset.numbers)  # instance numbers: annotations counted in JSON order, bad ones included
    meta_path = os.path.join(cfg.output_dir, outputs.META_FILE)
    if rank == 0:
        outputs.make_dirs(cfg.output_dir)
        current = set(numbers)
        for number in outputs.written_numbers(cfg.output_dir):  # instances the bench no longer has (or skips)
            if number not in current:
                outputs.remove_item(cfg.output_dir, number)
        write_json(dict(complete=False, settings=resume_record(cfg, run)), meta_path)
        cfg.write(cfg.output_dir)  # the run's resolved settings (settings.json)
    state.wait_for_everyone()
    load_s = time.perf_counter() - started
    result = run_rank(cfg, run, dataset, numbers, pipe, device, rank, world, show_progress=rank == 0)
    results = gather_object([result])  # every rank's, in rank order
    state.wait_for_everyone()
    if rank != 0:
        return None
    finished = [(number, dataset.instance_info(k)) for k, number in enumerate(numbers)
                if outputs.is_finished(cfg.output_dir, number)]
    written = outputs.write_index(cfg.output_dir, finished)
    meta = merge_meta(cfg, run, results, dict(dataset.skip_counts), filtered, len(dataset), written, load_s,
                      time.perf_counter() - started, device, pipe.scheduler)
    write_json(meta, meta_path)
    if written == 0:
        raise NothingGenerated(f"no instance of {bench_json} could be generated (skipped: {meta['skipped']}); "
                               f"see {meta_path}")
    return meta


def summary(meta: dict, out_dir: str) -> str:
    """The one-paragraph report printed at the end of infer.py."""
    c = meta["counts"]
    skipped = brief(meta["skipped"])
    rate = f"{meta['crops_per_s']} crops/s" if meta["crops_per_s"] else "-"
    return (f"{c['written']} crops in {out_dir} ({c['generated']} generated now, {c['kept_from_previous']} kept from "
            f"a previous run; {rate} on {meta['processes']} process(es), {meta['device']}, {meta['dtype']})\n"
            f"skipped {c['skipped']}: {skipped}; filtered {c['filtered']}: {brief(meta['filtered'])}"
            + (f"; {c['text_truncated']} text(s) longer than max_len={meta['conditions']['max_len']}: only their "
               "first max_len characters encoded" if c["text_truncated"] else ""))

