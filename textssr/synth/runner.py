"""TextSSR-F synthesis: real regions × target texts → diffusion → screening → STR LMDB, sharded and resumable.

Models and conditions come as in infer (the same config keys, :mod:`textssr.generation`).

Work items. The source's regions (one (image, annotation) pair each, indexed 0..n-1 by the dataset) are dealt to
ranks round-robin: rank ``r`` of ``N`` owns regions ``r, r+N, r+2N, …``, each giving ``variants_per_region`` items;
item ``k`` of a rank is region ``r + N * (k // V)``, variant ``k % V``. Everything random about an item comes from
``(seed, region, variant)``: target text and crop window from :func:`variant_rng`, initial latents *and* the
sampler's per-step noise from one CPU torch generator (:meth:`Synthesizer.generate`). So texts and noise do not depend
on N, batching or resumes; pixels can still differ in their last bits when an item is denoised in another batch
shape or with another number of CPU threads (float kernels reduce in another order), which is why a resume
rebuilds exactly the batches of an uninterrupted run.

Crash safety. A rank writes its shard LMDB one batch per transaction: the kept crops, ``num-samples`` and its
``synth-state`` (the next item ``cursor``, every counter, the settings) commit together. Restarted with the same
command, a rank reopens its shard, checks the settings and continues at ``cursor``. The cursor only ever stands at
a batch boundary and a batch is always the next ``batch_size`` buildable items, so the resumed run forms the very
batches of the uninterrupted run, and its result equals that run's on the same machine and thread count. A kill at
any moment leaves no duplicate and no gap.

Layout. With one process the shard *is* ``<output_dir>/lmdb``. With N > 1, rank r writes
``<output_dir>/shards/rank<r>-of-<N>/`` and marks it done; rank 0 waits for all marks, merges the shards (streamed,
k-way by (region, variant): the order of one process) into ``<output_dir>/lmdb.merging`` and renames it to
``<output_dir>/lmdb`` (atomic); the shards are deleted unless ``keep_shards``. Rank 0 then writes ``stats.json`` and
``contact_sheet.png``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from textssr.runtime import distributed
from textssr.config.checks import NothingToDo, RunStopped, check_output_dir, config_errors
from textssr.config import ConfigError, require_path
from textssr.utils.errors import on_every_rank
from textssr.utils.jsonio import read_json, write_json
from textssr.data import SkipSample, mask_bbox, skips
from textssr.data.anyword import AnyWordDataset
from textssr.data.factory import dataset_options, open_dataset
from textssr.data.seeding import item_torch_generator
from textssr.eval.contact_sheet import default_font_path, render_contact_sheet
from textssr.data.fingerprint import source_fingerprint
from textssr.utils.timing import Laps
from textssr.generation import (Run, check_memory, check_resume, crop_box, denoise, load_pipeline, resolve_run,
                                resume_record)
from textssr.synth.anagram import TextSource, build_text_source, report_left_out, variant_rng
from textssr.synth.regions import (REGIONS_FILE, PhotoRegions, RegionSource, detect_beside, region_source,
                                   report as report_source)
from textssr.synth.sheet import sheet_items
from textssr.eval.ocr import Recognizer
from textssr.synth.screening import Screener, ScreeningRule, screening_rule
from textssr.synth.str_lmdb import (StrLmdbReader, StrLmdbWriter, StrRecord,
                                    encode_crop, merge_str_lmdbs)
from textssr.config.settings import require_settings
from textssr.synth.settings import SynthSettings

COUNTER_KEYS = ("items", "regions_read", "generated", "kept", "skipped_items")
TIMER_KEYS = ("build_s", "detection_wait_s", "wait_s", "generation_s", "screening_s", "encode_s", "elapsed_s")
TALLIES = ("counters", "timers", "rejected", "skipped", "text_how")  # a shard state's counts, summed by merge_stats
LATENT_STREAM = 1  # extra SeedSequence word: the noise stream of an item, apart from its variant_rng


@dataclass
class Plan:
    """This rank's share of the work: ``num_regions`` regions, or the regions ``photos`` numbers as its photos are
    read (their number known once all are)."""
    rank: int
    world: int
    num_regions: Optional[int]
    variants: int
    photos: Optional[PhotoRegions] = None

    @property
    def num_items(self) -> Optional[int]:
        """This rank's items, None while the photos are still being numbered."""
        total = self.num_regions if self.photos is None else self.photos.num_regions
        if total is None:
            return None
        return max(0, -(-(total - self.rank) // self.world)) * self.variants

    def item(self, k: int) -> Tuple[int, int]:
        """Item k of this rank → (region index, variant)."""
        return self.rank + self.world * (k // self.variants), k % self.variants

    def has(self, k: int) -> bool:
        """Whether item k exists (photos: read until its region is numbered or none is left)."""
        region = self.item(k)[0]
        return self.photos.reach(region) if self.photos is not None else region < self.num_regions

    def totals(self) -> dict:
        """What a finished shard's state records once the regions are all numbered (photos: the source counts)."""
        return self.photos.totals() if self.photos is not None else {}


def validate(cfg, device: torch.device) -> Tuple[Run, Optional[ScreeningRule]]:
    """Fail fast, with one line, on any config value that cannot work (a batch too big for ``device``'s memory
    too); resolve checkpoints and sizes as infer does.
    Returns the run and the screening rule (None: off). Loads no model."""
    require_path(cfg.source, "source", "an AnyWord JSON, a benchmark folder holding test.json, an AnyWord-lmdb "
                 "folder (build one with `python -m textssr.data.build_lmdb`), a folder of ICDAR gt_*.txt "
                 "annotations or a folder of photos")
    check_output_dir(cfg.output_dir)
    run = resolve_run(cfg, device.type == "cpu")
    check_memory(run, cfg.batch_size, device)
    with config_errors():  # the rule's entries (the settings checked that it is a dict or None)
        rule = screening_rule(cfg.screening)
    # A bad text source / lexicon fails here, before any model is loaded (a None max_len is read from the UNet
    # later, so no word is too long yet).
    text_source_for(cfg, run.max_len)
    return run, rule


def with_source(run: Run, source: RegionSource) -> Run:
    """``run`` whose ``resolved`` holds the regions' content fingerprint: items are regions by index, an edited
    source would shift them (photos: the listing with each photo's size and time, whose stored detections number
    the same regions again)."""
    content = source.content or source_fingerprint(source.path)
    return dataclasses.replace(run, resolved=dict(run.resolved, source_content=content))


def text_source_for(cfg, max_len: int, font_path: Optional[str] = None) -> Tuple[TextSource, Dict[str, str]]:
    """The config's text source (lexicon words longer than ``max_len``, holding control characters or, with
    ``font_path``, characters the font lacks left out) and the words left out {word: why}."""
    with config_errors():
        return build_text_source(cfg.text_source, cfg.lexicon, cfg.anagram_ratio, cfg.unpermutable, max_len,
                                 font_path, cfg.lexicon_sampling, cfg.seed)


@dataclass
class Regions:
    """The source's regions this run uses: the first ``num_regions`` of ``dataset``, what indexing skipped
    (``index_skips``) and what the ``language`` / ``max_regions`` filters removed (``filtered``), by reason;
    ``source``: what making the regions from ICDAR annotations counted (textssr.synth.regions). A photo source's
    regions are numbered as its photos are read (``photos``; ``num_regions`` None, the counts at the end)."""
    dataset: object
    num_regions: Optional[int]
    index_skips: dict
    filtered: dict
    source: dict = field(default_factory=dict)
    photos: Optional[PhotoRegions] = None


def open_regions(cfg, run: Run, source: RegionSource, state) -> Regions:
    """Index the source; NothingToDo (before any model loads or output is written) when no region is left. A photo
    source starts detecting this rank's photos (:class:`PhotoRegions`), in a thread beside what follows or to the
    end here (the ``detection`` key), and waits for its first region."""
    options = dataset_options(cfg, allow_images_outside_root=cfg.allow_images_outside_root, **run.sizes())
    if source.kind == "photos":
        return open_photos(cfg, source, state, AnyWordDataset((), **options))
    dataset = open_dataset(source.path, **options)
    num_regions = len(dataset) if cfg.max_regions is None else min(len(dataset), cfg.max_regions)
    filtered = dict(dataset.filtered, **{skips.BEYOND_MAX_REGIONS: len(dataset) - num_regions})
    regions = Regions(dataset, num_regions, dict(dataset.skip_counts), {k: n for k, n in filtered.items() if n},
                      source.stats)
    if num_regions == 0:
        left = {k: n for k, n in regions.index_skips.items() if k != skips.TEXT_TRUNCATED}
        raise NothingToDo(f"nothing to synthesize: no region of source={cfg.source} is left (filtered: "
                          f"{skips.brief(regions.filtered)}; skipped: {skips.brief(left)})")
    return regions


def open_photos(cfg, source: RegionSource, state, dataset: AnyWordDataset) -> Regions:
    photos = PhotoRegions(cfg, state, source, dataset)
    beside = detect_beside(cfg.detection, state.device)
    photos.start(ocr_threads(), show_progress=state.process_index == 0 and not beside)
    try:
        if not beside:
            photos.wait_detected()
        if not photos.reach(0):
            s = photos.stats()
            raise NothingToDo(f"nothing to synthesize: no text line of the {s['photos_found']} photos in "
                              f"source={cfg.source} was kept ({s['photos_read']} read, {s['lines_detected']} lines "
                              f"detected, removed: {skips.brief(s['lines_removed'])}; photos skipped: "
                              f"{skips.brief(s['photos_skipped'])}); loosen the line filter keys")
    except BaseException:
        photos.stop()
        raise
    return Regions(dataset, None, {}, {}, photos=photos)


class Synthesizer:
    """Models + regions + text source + screener; :meth:`generate` turns built samples into crops."""

    def __init__(self, cfg, run: Run, regions: Regions, screener: Optional[Screener], device):
        self.cfg, self.run, self.screener, self.device = cfg, run, screener, device
        self.dataset = regions.dataset
        self.text_source, self.lexicon_left_out = text_source_for(cfg, run.max_len, self.dataset.font_path)
        self.pipe, self.run = load_pipeline(run, cfg, device)

    def generate(self, samples: List[dict], items: List[Tuple[int, int]]) -> List[np.ndarray]:
        """Denoise one batch (each item's CPU generator draws its initial latents, then its per-step sampler noise);
        returns the region crops, RGB uint8 (h, w, 3), cut to each mask's text bbox."""
        generators = [item_torch_generator(self.cfg.seed, region, variant, LATENT_STREAM, fold="shift")
                      for region, variant in items]
        images = denoise(self.pipe, self.run, samples, generators, self.cfg.num_inference_steps, self.device)
        return [crop_box(image, mask_bbox(sample["mask"])) for image, sample in zip(images, samples)]


def _fresh_state(settings: dict, world: int, rank: int, regions: Regions, lexicon_left_out: Dict[str, str]) -> dict:
    return dict(settings=settings, world_size=world, rank=rank, cursor=0, done=False,
                counters={k: 0 for k in COUNTER_KEYS}, timers={k: 0.0 for k in TIMER_KEYS}, rejected={}, skipped={},
                text_how={}, index_skips=regions.index_skips, filtered=regions.filtered, source=regions.source,
                lexicon_dropped=len(lexicon_left_out), lexicon_left_out=lexicon_left_out)


def _check_resume(state: Optional[dict], now: dict, world: int, where: str) -> None:
    """Refuse to continue a run made with another process count or other settings (textssr.generation)."""
    if state is None:
        return
    if state["world_size"] != world:
        raise ConfigError(f"{where} was started with {state['world_size']} process(es); relaunch with "
                          f"--num_processes {state['world_size']} or use a new output_dir")
    check_resume(state["settings"], now, where)


def ocr_threads() -> int:
    """The OCR's CPU threads: this machine's cores shared among the ranks it runs (``LOCAL_WORLD_SIZE``, set by
    torchrun / accelerate launch), so that 8 ranks' screening does not run 8 × all-cores threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def shard_dir(output_dir: str, rank: int, world: int) -> str:
    if world == 1:
        return os.path.join(output_dir, "lmdb")
    return os.path.join(output_dir, "shards", f"rank{rank}-of-{world}")


@dataclass
class ShardBatch:
    """The next ``batch_size`` buildable items of a rank and what building them counted; ``end``: the cursor after
    them; ``done``: no item follows (``totals``: what the finished shard's state then records). ``crops`` and the
    timings are filled in as the batch moves on."""
    end: int = 0
    done: bool = False
    totals: dict = field(default_factory=dict)
    samples: List[dict] = field(default_factory=list)
    items: List[Tuple[int, int]] = field(default_factory=list)
    metas: List[dict] = field(default_factory=list)
    counts: Dict[str, Counter] = field(default_factory=lambda: {name: Counter() for name in TALLIES})
    bad_regions: Dict[str, str] = field(default_factory=dict)  # found while building this batch
    crops: Optional[List[np.ndarray]] = None


def build_batches(cfg, plan: Plan, synth: Synthesizer, start: int, bad_regions: Dict[str, str]
                  ) -> Iterator[ShardBatch]:
    """This rank's batches from item ``start`` on. A region whose sample cannot be built is counted once (raised
    when ``strict``) and its other variants are passed over (``bad_regions``, updated here)."""
    k, strict = start, cfg.strict
    while plan.has(k):
        started, batch = time.perf_counter(), ShardBatch()
        waited = plan.photos.waited_s if plan.photos is not None else 0.0
        counters, skipped = batch.counts["counters"], batch.counts["skipped"]
        while len(batch.samples) < cfg.batch_size and plan.has(k):
            region, variant = plan.item(k)
            k += 1
            counters["items"] += 1
            counters["regions_read"] += variant == 0
            if str(region) in bad_regions:
                counters["skipped_items"] += 1
                continue
            rng = variant_rng(cfg.seed, region, variant)
            try:
                info = synth.dataset.instance_info(region)
                text, how = synth.text_source.text_for(info["text"], rng, region * plan.variants + variant)
                batch.samples.append(synth.dataset.build(region, rng=rng, text=text))
            except SkipSample as exc:
                if strict:
                    raise
                bad_regions[str(region)] = batch.bad_regions[str(region)] = exc.reason
                skipped[exc.reason] += 1
                counters["skipped_items"] += 1
                continue
            batch.counts["text_how"][how] += 1
            batch.items.append((region, variant))
            batch.metas.append(dict(region=region, variant=variant, img_name=info["img_name"],
                                    ann_index=info["ann_index"], source_text=info["text"], how=how,
                                    language=info.get("language")))
        batch.end, batch.done = k, not plan.has(k)
        if batch.done:
            batch.totals = plan.totals()
        timers = batch.counts["timers"]
        timers["build_s"] += time.perf_counter() - started
        if plan.photos is not None:
            timers["detection_wait_s"] += plan.photos.waited_s - waited
        yield batch


class ShardCommitter:
    """Screens, encodes and commits a rank's batches in order: each commit holds the batch's kept crops and the
    shard state up to it (cursor, every counter), so a kill leaves a state that a rerun continues exactly."""

    def __init__(self, cfg, plan: Plan, synth: Synthesizer, writer: StrLmdbWriter, state: dict, bar):
        self.cfg, self.plan, self.synth, self.writer, self.state, self.bar = cfg, plan, synth, writer, state, bar
        self.tally = {name: Counter(state[name]) for name in TALLIES}
        self.bad_regions = dict(state.get("bad_regions", {}))
        self.mark = time.perf_counter()

    def __call__(self, batch: ShardBatch) -> None:
        tally, fmt = self.tally, self.cfg.image_format
        for name, counts in batch.counts.items():
            tally[name].update(counts)
        self.bad_regions.update(batch.bad_regions)
        records = []
        if batch.crops is not None:
            lap = Laps(tally["timers"])
            targets = [s["text"] for s in batch.samples]
            screener = self.synth.screener
            reads = screener.screen(batch.crops, targets) if screener else [(None, None, None)] * len(batch.crops)
            lap("screening_s")
            tally["counters"]["generated"] += len(batch.crops)
            for crop, target, meta, (reason, read, conf) in zip(batch.crops, targets, batch.metas, reads):
                if reason is not None:
                    tally["rejected"][reason] += 1
                    continue
                meta.update(ocr_text=read, ocr_confidence=conf)
                records.append(StrRecord(encode_crop(crop, fmt, self.cfg.jpeg_quality), target,
                                         (crop.shape[1], crop.shape[0]), meta))
            lap("encode_s")
            tally["counters"]["kept"] += len(records)
        now = time.perf_counter()
        tally["timers"]["elapsed_s"] += now - self.mark
        self.mark = now
        self.state = dict(self.state, cursor=batch.end, done=batch.done, bad_regions=dict(self.bad_regions),
                          **{name: dict(c) for name, c in tally.items()}, **batch.totals)
        self.writer.commit(records, self.state)
        bar, photos = self.bar, self.plan.photos
        if bar.total is None and self.plan.num_items is not None:
            bar.total = self.plan.num_items
        bar.update(batch.end - bar.n)
        extra = {} if photos is None else dict(photos=f"{len(photos.records)}/{len(photos.photos)}")
        bar.set_postfix(kept=tally["counters"]["kept"], gen=tally["counters"]["generated"], **extra)


def run_shard(cfg, plan: Plan, synth: Synthesizer, writer: StrLmdbWriter, state: dict, show_progress: bool) -> dict:
    """Generate this rank's items from ``state['cursor']`` to the end, one committed batch at a time. With
    ``overlap`` the next batch is built and the previous one screened, encoded and committed in helper threads
    while the current one denoises (``wait_s``: the time denoising waited for a built batch); the batches, and so
    the bytes written, are the same either way."""
    bar = tqdm(total=plan.num_items, initial=state["cursor"], unit="item", disable=not show_progress,
               dynamic_ncols=True, desc=f"TextSSR-F rank {plan.rank}/{plan.world}")
    commit = ShardCommitter(cfg, plan, synth, writer, state, bar)
    batches = build_batches(cfg, plan, synth, state["cursor"], dict(commit.bad_regions))

    def generate(batch: ShardBatch) -> ShardBatch:
        if batch.samples:
            started = time.perf_counter()
            batch.crops = synth.generate(batch.samples, batch.items)
            batch.counts["timers"]["generation_s"] += time.perf_counter() - started
        return batch

    if cfg.overlap:
        with ThreadPoolExecutor(1) as builder, ThreadPoolExecutor(1) as committer:
            upcoming, committed = builder.submit(next, batches, None), None
            while True:
                started = time.perf_counter()
                batch = upcoming.result()
                if batch is None:
                    break
                batch.counts["timers"]["wait_s"] += time.perf_counter() - started
                upcoming = builder.submit(next, batches, None)
                generate(batch)
                if committed is not None:
                    committed.result()  # surface its error; at most one batch waits to be committed
                committed = committer.submit(commit, batch)
            if committed is not None:
                committed.result()
    else:
        for batch in batches:
            commit(generate(batch))
    bar.close()
    state = commit.state
    if not state["done"]:  # nothing left to do (e.g. an empty shard): mark it
        state = dict(state, done=True, **plan.totals())
        writer.commit([], state)
    return state


def merge_stats(states: List[dict]) -> dict:
    """Sum shard states into the stats.json payload. ``skipped`` counts the regions whose sample could not be
    built (by reason, each region once: its other variants are not tried, they count in ``skipped_items``);
    ``skipped_at_index`` the annotations the source dropped while indexing and ``filtered`` what the ``language``
    and ``max_regions`` options removed (every rank indexes the whole source, so both are taken once)."""
    total = {name: Counter() for name in TALLIES}
    for s in states:
        for name in TALLIES:
            total[name].update(s[name])
    c, t = total["counters"], total["timers"]
    first = states[0] if states else {}
    # Ranks run in parallel: wall time is the slowest rank's, throughput counts all of them.
    wall = max((s["timers"]["elapsed_s"] for s in states), default=0.0)
    return dict(regions_read=c["regions_read"], items=c["items"], generated=c["generated"], kept=c["kept"],
                rejected=dict(total["rejected"]), skipped=dict(total["skipped"]), skipped_items=c["skipped_items"],
                skipped_at_index=first.get("index_skips", {}), filtered=first.get("filtered", {}),
                lexicon_dropped=first.get("lexicon_dropped", 0), lexicon_left_out=first.get("lexicon_left_out", {}),
                source=first.get("source", {}),
                texts=dict(total["text_how"]),
                **{key: round(t[key], 3) for key in TIMER_KEYS if key != "elapsed_s"},
                wall_s=round(wall, 3), crops_per_s=round(c["generated"] / wall, 3) if wall else None,
                kept_per_s=round(c["kept"] / wall, 3) if wall else None, processes=len(states))


def finish(cfg, final_lmdb: str, states: List[dict], regions: Optional[Regions] = None) -> dict:
    """Write stats.json and contact_sheet.png (the first ``contact_sheet_size`` crops of the final LMDB with their
    labels and PP-OCRv4 readings, beside the real lines of ``regions``); a photo source's regions are written as
    ``regions.json`` and reported here. Returns the stats."""
    stats = merge_stats(states)
    dataset = regions.dataset if regions is not None else None
    if regions is not None and regions.photos is not None:
        regions.photos.drain()  # all stored: read the photos a finished shard read before a resume
        regions.photos.write(os.path.join(cfg.output_dir, REGIONS_FILE))
        report_source("photos", stats["source"])
    with StrLmdbReader(final_lmdb) as reader:
        stats.update(num_samples=len(reader), lmdb=final_lmdb)
        records = list(islice(reader, cfg.contact_sheet_size))
    items = sheet_items(records, dataset)
    write_json(stats, os.path.join(cfg.output_dir, "stats.json"), indent=2)
    if items:
        render_contact_sheet(items, default_font_path()).save(os.path.join(cfg.output_dir, "contact_sheet.png"))
    return stats


@contextlib.contextmanager
def shared_decision():
    """A refusal raised in the block from what every rank holds alike (rank 0's broadcast view) is printed once."""
    try:
        yield
    except ConfigError as exc:
        raise on_every_rank(exc)


def existing_layout(output_dir: str) -> dict:
    """What a previous launch left in ``output_dir``: a merged final LMDB (and its state), and the process counts of
    unmerged shard folders ``shards/rank<r>-of-<N>``. Read by rank 0 alone and broadcast (:func:`synthesize`):
    ranks listing a shared disk each on their own could see it differently."""
    final_lmdb = os.path.join(output_dir, "lmdb")
    merged = os.path.isfile(os.path.join(final_lmdb, "data.mdb"))
    final_state = None
    if merged:
        with StrLmdbReader(final_lmdb) as reader:
            final_state = reader.state
    worlds = set()
    for path in glob.glob(os.path.join(output_dir, "shards", "rank*-of-*")):
        count = path.rsplit("-of-", 1)[-1].split(".")[0]
        if count.isdigit():
            worlds.add(int(count))
    return dict(merged=merged, final_state=final_state, shard_worlds=sorted(worlds))


def refuse_other_counts(layout: dict, world: int, output_dir: str) -> dict:
    """``layout`` (:func:`existing_layout`), unless it holds another count's unmerged run: a relaunch with another
    process count resumes nothing and deletes nothing (an unmerged run's shards are named by the count that started
    it, its plan deals regions by that count), so it is refused in one line naming both counts."""
    if layout["merged"]:
        return layout
    other = [n for n in layout["shard_worlds"] if n != world or world == 1]
    if other:
        started = " and ".join(map(str, other))
        raise ConfigError(f"output_dir {output_dir} holds the unmerged shards of a run started with {started} "
                          f"processes (shards/rank*-of-{other[0]}) and this launch has {world}: relaunch with "
                          f"--num_processes {other[0]} to finish it (its committed batches are kept), or use a new "
                          "output_dir; nothing was changed")
    return layout


def wait_for_shards(marks: List[str], timeout_s: float, poll_s: float) -> None:
    """Rank 0 waits for every rank's ``.done`` mark, at most ``timeout_s`` (``ddp_timeout``); then one line names
    the ranks whose shards are missing."""
    def missing() -> List[int]:
        return [rank for rank, mark in enumerate(marks) if not os.path.isfile(mark)]

    def stopped() -> str:
        late = missing()
        return (f"rank 0 waited more than {distributed.KEY}={timeout_s:g} s for the finished shards of "
                f"{distributed.names(late)} ({os.path.dirname(marks[late[0]])}/rank*-of-{len(marks)}.done): a rank "
                f"stopped producing, or output_dir is not on storage every rank shares; rerun the same command to "
                f"resume (committed batches are kept), raising {distributed.KEY} if the ranks are only slow")

    distributed.poll_until(lambda: None if missing() else True, timeout_s, poll_s, stopped)


def synthesize(cfg: SynthSettings) -> Optional[dict]:
    """Run (or resume) the synthesis ``cfg`` (textssr.synth.settings) describes. Returns the stats on rank 0, None
    elsewhere."""
    require_settings(cfg, SynthSettings, "synthesize")
    dist = distributed.process_state("auto", cfg.ddp_timeout)
    with distributed.waiting(dist, cfg.ddp_timeout, "rank 0 reads the output folder and merges the shards alone"):
        return _synthesize(cfg, dist)


def _synthesize(cfg: SynthSettings, dist) -> Optional[dict]:
    rank, world = dist.process_index, dist.num_processes
    run, rule = validate(cfg, dist.device)
    layout = distributed.rank_zero_decision(lambda: refuse_other_counts(existing_layout(cfg.output_dir), world,
                                                                         cfg.output_dir))
    source = region_source(cfg, dist)
    if rank == 0 and source.kind != "photos":
        report_source(source.kind, source.stats)
    run = with_source(run, source)
    now = resume_record(cfg, run)
    regions = open_regions(cfg, run, source, dist)  # nothing left to do: said before any generated output is written
    try:
        return _generate(cfg, dist, run, rule, layout, now, regions)
    finally:
        if regions.photos is not None:
            regions.photos.stop()


def _generate(cfg: SynthSettings, dist, run: Run, rule, layout: dict, now: dict, regions: Regions) -> Optional[dict]:
    rank, world = dist.process_index, dist.num_processes
    final_lmdb = os.path.join(cfg.output_dir, "lmdb")
    os.makedirs(cfg.output_dir, exist_ok=True)
    if world > 1 and layout["merged"]:
        final_state = layout["final_state"]
        with shared_decision():
            _check_resume(final_state, now, world, final_lmdb)
        if final_state and final_state["done"]:  # merged already (killed while tidying up)
            if rank != 0:
                return None
            remove_shards(cfg.output_dir, world)
            return finish(cfg, final_lmdb, final_state["shards"], regions)
    if rank == 0:
        cfg.write(cfg.output_dir)
    path = shard_dir(cfg.output_dir, rank, world)
    with StrLmdbWriter(path) as writer:
        _check_resume(writer.state, now, world, path)
        state = writer.state
        if state is None or not state["done"]:
            screener = Screener(rule, Recognizer(num_threads=ocr_threads())) if rule else None
            synth = Synthesizer(cfg, run, regions, screener, dist.device)
            plan = Plan(rank, world, regions.num_regions, cfg.variants_per_region, regions.photos)
            if rank == 0:
                report_left_out(synth.lexicon_left_out)
            state = state or _fresh_state(now, world, rank, regions, synth.lexicon_left_out)
            state = run_shard(cfg, plan, synth, writer, state, show_progress=rank == 0)
    if world == 1:
        return finish(cfg, final_lmdb, [state], regions)
    write_json(state, path + ".done", indent=None)
    if rank != 0:
        return None
    paths = [shard_dir(cfg.output_dir, r, world) for r in range(world)]
    marks = [p + ".done" for p in paths]
    wait_for_shards(marks, cfg.ddp_timeout, cfg.poll_seconds)
    states = [read_json(m) for m in marks]
    refuse_other_detections(states, regions)
    merging = final_lmdb + ".merging"
    shutil.rmtree(merging, ignore_errors=True)
    final_state = dict(settings=now, world_size=world, done=True, shards=states)
    merge_str_lmdbs(paths, merging, order=lambda rec: (rec.meta["region"], rec.meta["variant"]), state=final_state)
    os.replace(merging, final_lmdb)
    if not cfg.keep_shards:
        remove_shards(cfg.output_dir, world)
    return finish(cfg, final_lmdb, states, regions)


def refuse_other_detections(states: List[dict], regions: Regions) -> None:
    """Rank 0, before merging a photo source's shards: every rank must have numbered its regions from the records
    rank 0 read (a record rewritten meanwhile, or storage the ranks do not share, would give other regions)."""
    if regions.photos is None:
        return
    apart = [r for r, s in enumerate(states) if s.get("detections") != states[0].get("detections")]
    if apart:
        raise RunStopped(f"{distributed.names(apart)} numbered their regions from other detections than rank 0 "
                         f"({regions.photos.folder}): was {regions.photos.root} changed meanwhile, or is the folder "
                         "not on storage every rank shares? The shards are kept, unmerged; use a new output_dir")


def remove_shards(output_dir: str, world: int) -> None:
    """Delete the merged run's own shards (``rank<r>-of-<world>`` and their marks), never another run's; the shards
    folder goes once it is empty."""
    for r in range(world):
        path = shard_dir(output_dir, r, world)
        shutil.rmtree(path, ignore_errors=True)
        if os.path.isfile(path + ".done"):
            os.remove(path + ".done")
    try:
        os.rmdir(os.path.join(output_dir, "shards"))
    except OSError:  # absent, or holding something else
        pass
