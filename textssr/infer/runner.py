"""Inference on a benchmark: bench → samples → TextSSRPipeline → local/ region/ gt/ labels.json meta.json.

Numbering. Instance ``i`` is the i-th annotation of the bench JSON (images and their annotations in
file order, bad ones included), so names never change: skipped instances leave gaps.

Determinism. Everything random about instance ``i`` comes from generators seeded by ``(seed, i)``:
the crop window (``region_placement="random"``) and the initial latents (drawn on the CPU). Results
therefore do not depend on batch size, process count or resumes.

Scale. Under ``accelerate launch --num_processes N`` rank ``r`` owns the dataset's instances
``r, r+N, r+2N, …`` and writes their files; after a barrier rank 0 rebuilds labels.json and
instances.json from the finished files and writes meta.json with every rank's counts and timings.

Resume. Re-running the same command keeps the finished items (all three images present) and
generates the rest. meta.json is written at the start with the run's content settings; a rerun whose
settings differ (another checkpoint, seed, resolution, …) is refused instead of mixing results.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from textssr.config import ConfigError, as_int, check_output_dir, check_seed, read_run_config, require_path
from textssr.data.fonts import resolve_font
from textssr.infer import outputs
from textssr.precision import AUTO, DTYPES, check_precision

BENCH_FILE = "test.json"
PLACEMENTS = ("random", "center")
DEVICES = ("auto", "cpu")
SIZE_KEYS = ("resolution", "ttf_size", "max_len")  # None in a config: the UNet's training value
# Config keys that decide what is generated: a resumed run must keep them (compared after resolution).
CONTENT_KEYS = ("bench", "language", "pretrained_vae", "pretrained_unet", "scheduler_path", "scheduler",
                "num_inference_steps", "seed", "resolution", "ttf_size", "max_len", "font_path",
                "region_placement", "mixed_precision", "timestep_spacing")
REQUIRED_KEYS = ("bench", "output_dir", "pretrained_vae", "pretrained_unet", "scheduler", "num_inference_steps",
                 "batch_size", "seed", "font_path", "region_placement")


class NothingGenerated(RuntimeError):
    """The run ended with no finished item at all (every instance skipped)."""


# ----------------------------------------------------------------------------------------------- config


def resolve_bench(bench: str) -> str:
    """The AnyWord JSON named by ``bench`` (a JSON file, or a folder holding test.json)."""
    require_path(bench, "bench", "give an AnyWord JSON or a folder holding test.json, e.g. "
                 "--cfg-options bench=./benchmark/ic13/test.json")
    if os.path.isdir(bench):
        path = os.path.join(bench, BENCH_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"bench: folder {bench} holds no {BENCH_FILE} — name the AnyWord JSON itself")
        return path
    return bench


def resolve_scheduler_dir(path: Optional[str], unet_dir: str) -> Optional[str]:
    """The folder holding scheduler_config.json: ``path``'s ``scheduler/`` or ``path`` itself; else the
    ``scheduler/`` saved in the UNet's training checkpoint; else None = the built-in SD 2.1 config (warned)."""
    configured = [os.path.join(path, "scheduler"), path] if path else []
    for candidate in configured + [os.path.join(os.path.dirname(os.path.abspath(unet_dir)), "scheduler")]:
        if os.path.isfile(os.path.join(candidate, "scheduler_config.json")):
            if candidate not in configured:
                print(f"scheduler: the one the UNet was trained with, {candidate}"
                      + (f" ({path} holds no scheduler_config.json)" if path else ""))
            return candidate
    warnings.warn(f"scheduler_path={path!r} holds no scheduler_config.json; using the built-in SD 2.1 scheduler "
                  "config (scaled-linear betas 0.00085-0.012, 1000 steps, v-prediction)", stacklevel=2)
    return None


def training_config(unet_dir: str) -> dict:
    """The resolved training config saved beside a checkpoint's ``unet/`` (read as data, never executed), or {}."""
    return read_run_config(os.path.dirname(os.path.abspath(unet_dir)))


def condition_sizes(cfg, unet_dir: str) -> Dict[str, Optional[int]]:
    """resolution, ttf_size, max_len: the config's value or, where it is None, the UNet's training value (its
    checkpoint's config.py; said on stdout). ttf_size/max_len without either stay None here and are read from
    the UNet's TTF encoder once it is loaded (:func:`fit_text_encoder`). A set value unlike the training one is
    warned about: running at another resolution is legitimate."""
    trained = training_config(unet_dir)
    sizes = {}
    for key in SIZE_KEYS:
        value, was = cfg.get(key), trained.get(key)
        if value is None and was is not None:
            print(f"{key}={was}, from the UNet's training config in {os.path.dirname(unet_dir)}")
            value = was
        elif value is not None and was is not None and int(was) != int(value):
            warnings.warn(f"{key}={value} differs from the UNet's training value {was}", stacklevel=2)
        if value is None and key == "resolution":
            raise ConfigError(f"resolution=None asks for the UNet's training value, but no training config beside "
                              f"{unet_dir} names it; set --cfg-options resolution=...")
        sizes[key] = as_int(value, key, minimum=1, allow_none=True)
    return sizes


def resolve_checkpoint(path: str, key: str, subfolder: str) -> str:
    """A model folder (or training output folder → latest checkpoint) for ``key``, as a ConfigError if absent."""
    from textssr.models import resolve_model_dir
    require_path(path, key, f"a `{subfolder}` model folder or a training output folder with checkpoint-*/{subfolder}")
    try:
        return str(resolve_model_dir(path, subfolder))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc


@dataclass
class Run:
    """The validated, resolved settings of one inference run."""
    bench_json: str
    vae_dir: str
    unet_dir: str
    scheduler_dir: Optional[str]
    dtype: Optional[torch.dtype]  # None: mixed_precision="auto", settled once the pipeline is loaded
    resolution: int
    ttf_size: Optional[int]  # None until fit_text_encoder reads it from the UNet
    max_len: Optional[int]
    content: dict = field(default_factory=dict)  # the CONTENT_KEYS, resolved; compared on resume
    precision: Optional[dict] = None  # how mixed_precision="auto" was settled


def check_sampling(cfg, on_cpu: bool, default_placement: str) -> str:
    """Check the keys infer and synthesize.py share — output folder, batch size, steps, seed, sampler, step
    spacing, region placement, precision — before anything is loaded or written; returns the mixed_precision
    name."""
    from textssr.models import SCHEDULERS, TIMESTEP_SPACINGS
    check_output_dir(cfg.output_dir)
    for key in ("batch_size", "num_inference_steps"):
        as_int(cfg[key], key, minimum=1)
    check_seed(cfg.seed)
    if cfg.scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler={cfg.scheduler!r}; choose one of {sorted(SCHEDULERS)}")
    if cfg.get("timestep_spacing") not in TIMESTEP_SPACINGS:
        raise ConfigError(f"timestep_spacing={cfg.timestep_spacing!r}; choose one of {TIMESTEP_SPACINGS}")
    if cfg.get("region_placement", default_placement) not in PLACEMENTS:
        raise ConfigError(f"region_placement={cfg.region_placement!r}; choose one of {PLACEMENTS}")
    return check_precision(cfg.get("mixed_precision", "no"), "mixed_precision", on_cpu)


def validate(cfg, on_cpu: bool) -> Run:
    """Check every config value before a model is built; a ConfigError names the key and the fix."""
    missing = [k for k in REQUIRED_KEYS if cfg.get(k) is None]
    if missing:
        raise ConfigError(f"infer config is missing {', '.join(missing)} (see configs/infer_cfg.py)")
    precision = check_sampling(cfg, on_cpu, default_placement="center")
    if cfg.get("device", "auto") not in DEVICES:
        raise ConfigError(f"device={cfg.device!r}; choose one of {DEVICES} (under accelerate, pick GPUs with "
                          "CUDA_VISIBLE_DEVICES)")
    bench_json = resolve_bench(str(cfg.bench))
    vae_dir = resolve_checkpoint(str(cfg.pretrained_vae), "pretrained_vae", "vae")
    unet_dir = resolve_checkpoint(str(cfg.pretrained_unet), "pretrained_unet", "unet")
    scheduler_dir = resolve_scheduler_dir(cfg.get("scheduler_path"), unet_dir)
    sizes = condition_sizes(cfg, unet_dir)
    resolve_font(cfg.font_path)  # a file that is not a font fails here, before any model loads
    content = {k: cfg.get(k) for k in CONTENT_KEYS}
    content.update(sizes, bench=os.path.abspath(bench_json), pretrained_vae=os.path.abspath(vae_dir),
                   pretrained_unet=os.path.abspath(unet_dir),
                   scheduler_path=os.path.abspath(scheduler_dir) if scheduler_dir else None,
                   mixed_precision=precision)
    return Run(bench_json, vae_dir, unet_dir, scheduler_dir, DTYPES.get(precision), content=content, **sizes)


def check_resume(out_dir: str, content: dict) -> None:
    """Refuse to add to an output folder written with other content settings."""
    previous = outputs.read_meta(out_dir)
    if previous is None:
        return
    before = previous.get("settings", {})
    changed = sorted(k for k in content if before.get(k) != content[k])
    if changed:
        detail = ", ".join(f"{k}: {before.get(k)!r} → {content[k]!r}" for k in changed)
        raise ConfigError(f"output_dir {out_dir} holds results made with other settings ({detail}); "
                          "restore them or choose a new output_dir")


# ----------------------------------------------------------------------------------------------- bench


def instance_seeds(seed: int, number: int) -> Tuple[np.random.Generator, torch.Generator]:
    """(crop-window generator, initial-latent generator) of bench instance ``number``."""
    placement, noise = np.random.SeedSequence([int(seed), int(number)]).spawn(2)
    latent_seed = int(noise.generate_state(1, np.uint64)[0] & np.uint64(2 ** 63 - 1))
    return np.random.default_rng(placement), torch.Generator().manual_seed(latent_seed)


def open_bench(cfg, run: Run):
    from textssr.data import AnyWordDataset
    return AnyWordDataset(run.bench_json, seed=int(cfg.seed), resolution=run.resolution, ttf_size=run.ttf_size,
                          max_len=run.max_len, language=cfg.get("language"), font_path=cfg.font_path,
                          vae_mode=False, strict=bool(cfg.get("strict", False)),
                          region_placement=cfg.region_placement)


# ----------------------------------------------------------------------------------------------- models


def load_pipeline(run: Run, scheduler_name: str, device: torch.device, timestep_spacing: Optional[str] = None,
                  batch_size: int = 1):
    """TextSSRPipeline on ``device`` in ``run.dtype``, progress bar off (the runner shows its own). With
    mixed_precision="auto" (``run.dtype`` None) the dtype is settled here (:func:`settle_precision`)."""
    from diffusers_textssr import TextSSRPipeline
    from textssr.models import load_scheduler, load_unet, load_vae
    vae, unet = load_vae(run.vae_dir).to(device).eval(), load_unet(run.unet_dir).to(device).eval()
    scheduler = load_scheduler(run.scheduler_dir, scheduler_name, timestep_spacing=timestep_spacing)
    pipe = TextSSRPipeline(vae=vae, unet=unet, scheduler=scheduler)
    if run.dtype is None:
        settle_precision(pipe, run, device, batch_size)
    if run.dtype != torch.float32:
        pipe.vae.to(dtype=run.dtype)
        pipe.unet.to(dtype=run.dtype)
    return pipe


def settle_precision(pipe, run: Run, device: torch.device, batch_size: int, choose=None):
    """mixed_precision="auto": bf16 (else fp16) on a GPU; on the CPU bf16 only where one sampling step of a batch
    (encode, UNet, decode) is measurably faster than in float32 (textssr.precision). Sets ``run.dtype`` and
    ``run.precision`` (the record meta.json keeps) and prints the choice."""
    from diffusers_textssr import TextSSRPipeline
    from textssr.precision import choose as default_choose, gpu_mixed_precision
    if device.type == "cuda":
        choice = gpu_mixed_precision()
    else:
        fast = TextSSRPipeline(vae=copy.deepcopy(pipe.vae).to(dtype=torch.bfloat16),
                               unet=copy.deepcopy(pipe.unet).to(dtype=torch.bfloat16), scheduler=pipe.scheduler)
        inputs = probe_inputs(pipe, run.resolution, min(int(batch_size), 4))

        def sampler(p):
            return lambda: p(*inputs, num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                             output_type="latent", show_progress=False)

        choice = (choose or default_choose)(device, sampler(pipe), sampler(fast))
    run.dtype = choice.dtype
    run.precision = dict(choice.as_record(), key="mixed_precision")
    print(choice.describe("mixed_precision"))
    return choice


def probe_inputs(pipe, resolution: int, batch: int):
    """Zero conditions of the right shapes for timing one pipeline call (ttf stack as the UNet's encoder wants)."""
    ttf = torch.ones(batch, int(pipe.unet.config.ttf_in_chans), int(pipe.unet.config.ttf_img_size),
                     int(pipe.unet.config.ttf_img_size))
    image = torch.zeros(batch, 3, resolution, resolution)
    return ttf, image + 1.0, image, torch.ones(batch, 1, resolution, resolution)


def latent_shape(pipe, resolution: int) -> Tuple[int, int, int]:
    """(C, h, w) of the initial latents; a ConfigError if ``resolution`` does not fit the VAE."""
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    if resolution % factor:
        raise ConfigError(f"resolution={resolution} is not a multiple of the VAE's downsampling factor {factor}")
    return pipe.vae.config.latent_channels, resolution // factor, resolution // factor


def fit_text_encoder(run: Run, unet) -> None:
    """ttf_size and max_len are fixed by the UNet's TTF encoder: fill them in where unset, refuse a mismatch."""
    img, chans = int(unet.config.ttf_img_size), int(unet.config.ttf_in_chans)
    run.ttf_size = img if run.ttf_size is None else run.ttf_size
    run.max_len = chans if run.max_len is None else run.max_len
    if (img, chans) != (run.ttf_size, run.max_len):
        raise ConfigError(f"ttf_size={run.ttf_size}, max_len={run.max_len} do not match the UNet's TTF encoder "
                          f"(image {img}, {chans} channels); set --cfg-options ttf_size={img} max_len={chans}")


# ----------------------------------------------------------------------------------------------- loop


def generate(pipe, samples: List[dict], generators: List[torch.Generator], shape, steps: int,
             device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """Denoise one batch; ``generators`` (one CPU generator per sample) draw its initial latents, then the
    sampler's per-step noise. Returns the generated regions, uint8 (B, R, R, 3)."""
    latents = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)

    def stack(key):
        return torch.stack([s[key] for s in samples]).to(device, dtype)

    with torch.no_grad():
        out = pipe(stack("ttf_img"), stack("glyph"), stack("masked_image"), stack("mask"),
                   num_inference_steps=steps, generator=generators, latents=latents, output_type="np",
                   show_progress=False)
    return outputs.to_uint8(np.asarray(out.images))


def real_region(sample: dict) -> np.ndarray:
    """The real R×R crop of ``sample`` (``image`` in [-1, 1]) as uint8 (R, R, 3)."""
    return outputs.to_uint8((sample["image"].permute(1, 2, 0).float().numpy() + 1.0) / 2.0)


@dataclass
class RankResult:
    """What one rank did in this run. ``timers``: build_s and write_s run in helper threads, overlapped with
    generate_s; wait_s is the time the main thread waited for a built batch."""
    rank: int
    owned: int = 0
    finished_before: int = 0
    generated: int = 0
    loop_s: float = 0.0
    skipped: Counter = field(default_factory=Counter)
    timers: Counter = field(default_factory=Counter)


@dataclass
class Batch:
    """Built samples, their bench numbers, instance keys and generators, and how many pending instances were
    consumed."""
    samples: List[dict]
    numbers: List[int]
    generators: List[torch.Generator]
    consumed: int
    keys: List[str] = field(default_factory=list)


def batch_builder(cfg, dataset, numbers: List[int], pending: List[int], result: RankResult, keys: Dict[int, str]):
    """A function returning the next :class:`Batch` of ``pending`` dataset indices (consumed 0: done).
    Bad instances are counted in ``result.skipped`` (raised when ``strict``)."""
    from textssr.data import SkipSample
    strict, batch_size = bool(cfg.get("strict", False)), int(cfg.batch_size)
    cursor = 0

    def next_batch() -> Batch:
        nonlocal cursor
        started, batch = time.perf_counter(), Batch([], [], [], 0)
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
        return batch

    return next_batch


def instance_key(dataset, index: int, number: int) -> str:
    """What dataset instance ``index`` (bench number ``number``) is, as a digest (textssr.infer.outputs)."""
    from textssr.data import SkipSample
    info = dataset.instance_info(index)
    try:
        polygon = dataset.polygon(index)
    except SkipSample:  # unreadable: the instance will be skipped when built
        polygon = np.zeros((0, 2))
    return outputs.instance_key(number, info["img_name"], info["ann_index"], info["text"], polygon,
                                dataset.image_digest(index))


def write_batch(out_dir: str, batch: Batch, images: np.ndarray, result: RankResult) -> None:
    from textssr.data import mask_bbox
    started = time.perf_counter()
    for image, sample, number, key in zip(images, batch.samples, batch.numbers, batch.keys):
        outputs.write_item(out_dir, number, image, real_region(sample), mask_bbox(sample["mask"]), key)
    result.timers["write_s"] += time.perf_counter() - started


def run_rank(cfg, run: Run, dataset, numbers: List[int], pipe, shape, device, rank: int, world: int,
             show_progress: bool) -> RankResult:
    """Generate this rank's unfinished instances batch by batch. The next batch is built and the previous one
    written in helper threads while the current one denoises; an item's files appear once they are complete."""
    result = RankResult(rank)
    owned = [k for k in range(len(dataset)) if k % world == rank]
    keys = {k: instance_key(dataset, k, numbers[k]) for k in owned}
    pending = []
    for k in owned:
        if outputs.clean_item(cfg.output_dir, numbers[k], keys[k]):
            result.finished_before += 1
        else:
            pending.append(k)
    result.owned = len(owned)
    next_batch = batch_builder(cfg, dataset, numbers, pending, result, keys)
    steps = int(cfg.num_inference_steps)
    bar = tqdm(total=len(owned), initial=result.finished_before, unit="crop", dynamic_ncols=True,
               disable=not show_progress, desc=f"infer rank {rank}/{world}" if world > 1 else "infer")
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as builder, ThreadPoolExecutor(1) as writer:
        upcoming, written = builder.submit(next_batch), None
        while True:
            t0 = time.perf_counter()
            batch = upcoming.result()
            result.timers["wait_s"] += time.perf_counter() - t0
            if batch.consumed == 0:
                break
            upcoming = builder.submit(next_batch)
            images = None
            if batch.samples:
                t1 = time.perf_counter()
                images = generate(pipe, batch.samples, batch.generators, shape, steps, device, run.dtype)
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


def gather(obj, world: int) -> list:
    """Every rank's ``obj`` on every rank (a list of one without distributed)."""
    if world == 1:
        return [obj]
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def of(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return dict(python=platform.python_version(), cuda=torch.version.cuda,
                **{name: of(name) for name in ("textssr", "torch", "diffusers", "accelerate", "pillow", "numpy",
                                               "opencv-python-headless")})


def finished_records(out_dir: str, dataset, numbers: List[int]) -> List[dict]:
    """labels/instances rows for every finished item of the bench."""
    rows = []
    for k, number in enumerate(numbers):
        if outputs.is_finished(out_dir, number):
            info = dataset.instance_info(k)
            rows.append(dict(number=number, text=info["text"], language=info.get("language"),
                             img_name=info["img_name"], ann_index=info["ann_index"]))
    return rows


def merge_meta(cfg, run: Run, results: List[RankResult], index_skips: Dict[str, int], num_instances: int,
               written: int, load_s: float, wall_s: float, device, scheduler) -> dict:
    from textssr.data.skips import TEXT_TRUNCATED
    skipped = Counter(index_skips)
    truncated = skipped.pop(TEXT_TRUNCATED, 0)  # counted by the dataset, but those instances are generated
    timers = Counter()
    for r in results:
        skipped.update(r.skipped)
        timers.update(r.timers)
    generated = sum(r.generated for r in results)
    loop_s = max(r.loop_s for r in results)  # ranks run side by side: the slowest one's loop
    return dict(
        complete=True,
        settings=run.content,
        config=cfg.to_dict(),
        conditions=dict(resolution=run.resolution, ttf_size=run.ttf_size, max_len=run.max_len),
        checkpoints=dict(vae=os.path.abspath(run.vae_dir), unet=os.path.abspath(run.unet_dir),
                         scheduler=os.path.abspath(run.scheduler_dir) if run.scheduler_dir else "built-in SD 2.1"),
        scheduler=dict(name=cfg.scheduler, class_name=type(scheduler).__name__, config=dict(scheduler.config)),
        seed=int(cfg.seed),
        versions=library_versions(),
        device=str(device), processes=len(results), dtype=str(run.dtype).replace("torch.", ""),
        precision_choice=run.precision,
        counts=dict(indexed=num_instances, written=written, generated=generated,
                    kept_from_previous=sum(r.finished_before for r in results),
                    skipped=sum(skipped.values()), text_truncated=truncated),
        skipped=dict(sorted(skipped.items())),
        timings=dict(load_s=round(load_s, 3), loop_s=round(loop_s, 3), wall_s=round(wall_s, 3),
                     **{k: round(v, 3) for k, v in sorted(timers.items())}),
        crops_per_s=round(generated / loop_s, 3) if loop_s > 0 and generated else None,
    )


def run_inference(cfg) -> Optional[dict]:
    """Run (or resume) inference as ``cfg`` says. Returns meta.json's dict on rank 0, None on the others.

    Raises ConfigError for a config that cannot work (before anything is written), SkipSample on a bad
    instance when ``strict``, and NothingGenerated when no item at all could be written.
    """
    from accelerate import PartialState
    started = time.perf_counter()
    state = PartialState(cpu=cfg.get("device", "auto") == "cpu")
    rank, world, device = state.process_index, state.num_processes, state.device
    run = validate(cfg, on_cpu=device.type == "cpu")
    check_resume(cfg.output_dir, run.content)
    pipe = load_pipeline(run, cfg.scheduler, device, cfg.get("timestep_spacing"), int(cfg.batch_size))
    fit_text_encoder(run, pipe.unet)
    shape = latent_shape(pipe, run.resolution)
    dataset = open_bench(cfg, run)
    numbers = list(dataset.numbers)  # instance numbers: annotations counted in JSON order, bad ones included
    state.wait_for_everyone()  # every rank has read the old meta.json before rank 0 replaces it
    if rank == 0:
        outputs.make_dirs(cfg.output_dir)
        current = set(numbers)
        for number in outputs.written_numbers(cfg.output_dir):  # instances the bench no longer has (or skips)
            if number not in current:
                outputs.remove_item(cfg.output_dir, number)
        outputs.write_json(dict(complete=False, settings=run.content, config=cfg.to_dict()),
                           os.path.join(cfg.output_dir, outputs.META_FILE))
    state.wait_for_everyone()
    load_s = time.perf_counter() - started
    result = run_rank(cfg, run, dataset, numbers, pipe, shape, device, rank, world, show_progress=rank == 0)
    results = gather(result, world)
    state.wait_for_everyone()
    if rank != 0:
        return None
    written, _ = outputs.write_index(cfg.output_dir, finished_records(cfg.output_dir, dataset, numbers))
    meta = merge_meta(cfg, run, results, dict(getattr(dataset, "skip_counts", {})), len(dataset), written, load_s,
                      time.perf_counter() - started, device, pipe.scheduler)
    outputs.write_json(meta, os.path.join(cfg.output_dir, outputs.META_FILE))
    if written == 0:
        raise NothingGenerated(f"no instance of {run.bench_json} could be generated (skipped: {meta['skipped']}); "
                               f"see {os.path.join(cfg.output_dir, outputs.META_FILE)}")
    return meta


def summary(meta: dict, out_dir: str) -> str:
    """The one-paragraph report printed at the end of infer.py."""
    c = meta["counts"]
    skipped = ", ".join(f"{k}={v}" for k, v in meta["skipped"].items()) or "none"
    rate = f"{meta['crops_per_s']} crops/s" if meta["crops_per_s"] else "-"
    return (f"{c['written']} crops in {out_dir} ({c['generated']} generated now, {c['kept_from_previous']} kept from "
            f"a previous run; {rate} on {meta['processes']} process(es), {meta['device']}, {meta['dtype']})\n"
            f"skipped {c['skipped']}: {skipped}")

