"""The one training loop of TextSSR: VAE fine-tune, CDM step 1 and CDM step 2 all run ``train(cfg, stage)``.

Under ``accelerate``: mixed precision, gradient accumulation, grad-norm clipping, a diffusers learning-rate schedule,
optional EMA and 8-bit Adam, TensorBoard (loss, lr, a sample grid every ``image_log_steps``), tqdm on the main
process. Checkpoints, resume and pruning live in ``checkpoint.py``; the stage-specific model, loss and images in
``stages.py``; the config checks in ``validate.py``.

Steps are optimizer steps: ``global_step`` counts them, ``max_train_steps`` bounds them, and an epoch is
``steps_per_epoch × gradient_accumulation_steps`` batches per rank (the tail that does not fill an accumulation
group is dropped, so a resumed run knows exactly which batches it has consumed).
"""
from __future__ import annotations

import json
import math
import os
import time
from itertools import islice
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from textssr.runtime import distributed
from textssr.config.checks import SharedStop
from textssr.config import ConfigError
from textssr.data.skips import brief
from textssr.runtime.precision import DTYPES, check_gpu_bf16, configure_backends, resolve_mixed_precision
from textssr.runtime.profiling import StepProfiler, autocast
from textssr.train.precision import TrainPrecision
from textssr.train.skip_counter import SkipCounter
from textssr.train import checkpoint as ckpt
from textssr.train.data import build_dataset, build_loader, to_device
from textssr.config.settings import require_settings
from textssr.train.settings import STAGE_SETTINGS
from textssr.train.stages import STAGES
from textssr.train.validate import validate_config

LOG_FILE = "train_log.jsonl"


class RankZeroLog:
    """Prints and records (``<output_dir>/train_log.jsonl``) on the main process only; silent elsewhere."""

    def __init__(self, accelerator, output_dir: str):
        self.enabled = accelerator.is_main_process
        self.path = os.path.join(output_dir, LOG_FILE)

    def __call__(self, message: str, **record) -> None:
        if not self.enabled:
            return
        print(message, flush=True)
        if record:
            with open(self.path, "a") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def gradient_norm(accelerator, model, max_norm: Optional[float]) -> torch.Tensor:
    """The norm of the model's summed (unscaled) gradients, which are clipped to ``max_norm`` when it is set; without
    it they are only measured (clipping to infinity would scale every gradient by 1.0: a pass over all of them
    that changes no bit)."""
    if max_norm:
        norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
    else:
        accelerator.unscale_gradients()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else None
    return torch.zeros((), device=accelerator.device) if norm is None else norm


def _accelerator(cfg, mixed_precision: str):
    """The run's Accelerator; the process state (group, timeout, device) already exists (:func:`train`)."""
    report_to = None if cfg.report_to in (None, "none") else cfg.report_to
    # gradient_as_bucket_view: DDP's gradients are views into its all-reduce buckets, not a second full copy
    # (~3.5 GB per GPU for SD 2.1's UNet in float32)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters,
                                        gradient_as_bucket_view=True)
    return Accelerator(
        cpu=distributed.use_cpu(),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir,
                                            logging_dir=os.path.join(cfg.output_dir, cfg.logging_dir)),
        kwargs_handlers=[ddp, distributed.group_kwargs(cfg.ddp_timeout)],
    )


def _optimizer(cfg, params, num_processes: int):
    if cfg.use_8bit_adam:
        import bitsandbytes as bnb  # checked at start-up
        cls = bnb.optim.AdamW8bit
    else:
        cls = torch.optim.AdamW
    lr = cfg.learning_rate
    if cfg.scale_lr:
        lr *= cfg.train_batch_size * cfg.gradient_accumulation_steps * num_processes
    fused = {"fused": True} if cfg.adam_fused else {}  # one kernel for all tensors (CPU and CUDA)
    return cls(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
               weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon, **fused)


def train(cfg, stage_name: str) -> dict:
    """Run one training stage (``"vae"`` or ``"cdm"``) as ``cfg`` (its settings: textssr.train.settings) says;
    return the final trainer state."""
    require_settings(cfg, STAGE_SETTINGS[stage_name], "train")
    stage = STAGES[stage_name]()
    mixed = resolve_mixed_precision(cfg.mixed_precision)  # None: accelerate's setting (ACCELERATE_MIXED_PRECISION)
    validate_config(cfg, stage, mixed)
    # the process group and each rank's device (distributed.use_cpu: the one device rule), before anything looks
    # at a GPU
    state = distributed.process_state("auto", cfg.ddp_timeout)
    check_gpu_bf16(state.device, mixed_precision=mixed.name,
                   **({"vae_dtype": cfg.vae_dtype} if stage.name == "cdm" else {}))
    precision = TrainPrecision(mixed, state.device)  # "auto": on a GPU from its hardware, on a CPU the first batch
    accelerator = _accelerator(cfg, precision.accelerate_name)
    with distributed.waiting(state, cfg.ddp_timeout, "rank 0 writes checkpoints, prunes old ones and draws the "
                                                    "sample grids alone meanwhile"):
        return _train(cfg, stage, precision, accelerator)


def _train(cfg, stage, precision: TrainPrecision, accelerator) -> dict:
    log = RankZeroLog(accelerator, cfg.output_dir)
    if accelerator.is_main_process:
        os.makedirs(cfg.output_dir, exist_ok=True)
        ckpt.remove_partial(cfg.output_dir)
        cfg.write(cfg.output_dir)  # the run's resolved settings (settings.json)
    log(f"[{stage.name}] {precision.in_effect}", event="precision_setting", **precision.records["mixed_precision"])
    configure_backends(accelerator.device, cfg.allow_tf32)  # every stage trains at one fixed crop size

    # Data first: it is cheap and its size decides the step arithmetic.
    dataset = build_dataset(cfg, vae_mode=stage.vae_mode)
    index_skips = dict(sorted(dataset.skip_counts.items()))  # filtered while indexing: the same on every rank
    filtered = dict(sorted(dataset.filtered.items()))  # what the language option removed
    loader = build_loader(dataset, cfg, accelerator.num_processes, accelerator.process_index)
    accum = cfg.gradient_accumulation_steps
    steps_per_epoch = len(loader) // accum
    if steps_per_epoch == 0:
        raise ConfigError(f"lmdb_path: {len(dataset)} samples make no optimizer step at train_batch_size="
                          f"{cfg.train_batch_size} × gradient_accumulation_steps={accum} × {accelerator.num_processes} "
                          "process(es); use more data or smaller batches")
    max_steps = cfg.max_train_steps or cfg.num_train_epochs * steps_per_epoch
    num_epochs = math.ceil(max_steps / steps_per_epoch)

    set_seed(cfg.seed)  # the same on every rank: identical initial weights
    model = stage.build(cfg)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    optimizer = _optimizer(cfg, [p for p in model.parameters() if p.requires_grad], accelerator.num_processes)
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, model_cls=type(model), model_config=model.config,
                   foreach=True) if cfg.use_ema else None  # foreach: one fused update for all weights
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    # Under DDP the gradients are views into its all-reduce buckets (gradient_as_bucket_view): zeroing them in place
    # keeps those views, where set_to_none would make every non-syncing micro-batch allocate a second full copy.
    set_to_none = not isinstance(model, torch.nn.parallel.DistributedDataParallel)
    if ema is not None:
        ema.to(accelerator.device)
    stage.setup(accelerator, DTYPES[accelerator.mixed_precision])
    profiler = StepProfiler(cfg.profile, accelerator.device)
    stage.lap = profiler.lap
    ckpt.register_model_hooks(accelerator, stage.subfolder, ema)
    if accelerator.is_main_process:
        stage.save_extra(cfg.output_dir)  # e.g. scheduler/ beside the checkpoints, for infer.py

    # Per-rank stream for noise, timesteps and posterior samples (DiT: seed * world_size + rank).
    rank_seed = cfg.seed * accelerator.num_processes + accelerator.process_index
    generator = torch.Generator(device=accelerator.device).manual_seed(rank_seed)

    global_step, saved_step, skipped = 0, None, SkipCounter(dataset)
    resume_path = _agreed_resume(cfg, accelerator)
    if resume_path:
        state = ckpt.load_checkpoint(accelerator, resume_path, generator)
        global_step = saved_step = state["global_step"]
        skipped = SkipCounter(dataset, state.get("skipped_instances"))  # found before: not built again
    log(f"[{stage.name}] {'resuming from ' + resume_path if resume_path else 'starting'} at step {global_step}/"
        f"{max_steps}: {len(dataset)} samples, {steps_per_epoch} steps/epoch, batch {cfg.train_batch_size} × "
        f"accum {accum} × {accelerator.num_processes} process(es)",
        event="start", step=global_step, max_steps=max_steps, resumed_from=resume_path,
        num_processes=accelerator.num_processes, samples=len(dataset))
    report = cfg.report_to not in (None, "none")
    if report:
        scalars = {k: v for k, v in cfg.to_dict().items() if isinstance(v, (int, float, str, bool))}  # TB hparams
        accelerator.init_trackers(cfg.tracker_project_name, config=scalars)

    def trainer_state(epoch: int) -> dict:
        counts, instances = skipped.total(accelerator)
        return {"global_step": global_step, "epoch": epoch, "max_train_steps": max_steps,
                "steps_per_epoch": steps_per_epoch, "num_processes": accelerator.num_processes,
                "skipped": counts, "skipped_instances": {str(k): v for k, v in instances.items()},
                "skipped_at_index": index_skips, "filtered_at_index": filtered, "precision": precision.records}

    agree = distributed.rank_zero_choice  # ranks time their own batches and could disagree: rank 0's choice

    def save(epoch: int) -> None:
        path = ckpt.save_checkpoint(accelerator, cfg.output_dir, global_step, cfg, trainer_state(epoch), generator,
                                    extra=stage.save_extra, total_limit=cfg.checkpoints_total_limit)
        log(f"[{stage.name}] saved {path}", event="checkpoint", step=global_step, path=path)

    progress = tqdm(total=max_steps, initial=global_step, desc=f"{stage.name} steps",
                    disable=not accelerator.is_local_main_process)
    batches_per_epoch = steps_per_epoch * accum
    first_epoch = global_step // steps_per_epoch
    consumed = (global_step % steps_per_epoch) * accum  # batches of first_epoch already trained on
    image_batch, loss_sum, start = None, torch.zeros((), device=accelerator.device), time.time()
    epoch, settled = first_epoch, False
    for epoch in range(first_epoch, num_epochs):
        if global_step >= max_steps:  # resumed a finished run: nothing left to train, nothing to save
            break
        loader.sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)  # per-epoch random region placement
        epoch_loader = accelerator.skip_first_batches(loader, consumed) if consumed else loader
        for batch in islice(epoch_loader, batches_per_epoch - consumed):
            skipped.add(batch)
            batch = to_device(batch, accelerator.device)
            if not settled:
                precision.settle(stage, accelerator.unwrap_model(model), batch, generator, accelerator.device, agree,
                                 log)
            
            profiler.lap("data")
            stage.observe(batch)
            with accelerator.accumulate(model):
                with autocast(accelerator.device, precision.use_autocast):
                    loss = stage.loss(model, batch, generator)
                if not settled:  # the first batch: latents (stage.loss) and loss must be finite on every rank
                    _check_first_batch(loss, stage, precision, accelerator.device)
                    settled = True
                accelerator.backward(loss)
                profiler.lap("backward")
                if accelerator.sync_gradients:  # the norm of the summed gradients (clipped when asked)
                    grad_norm = gradient_norm(accelerator, model, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=set_to_none)
                profiler.lap("optimizer")
            loss_sum += loss.detach() / accum
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            if ema is not None:
                ema.step(model.parameters())
            # the same on every rank: the mean loss over ranks and the norm of the all-reduced gradients
            step_loss, step_norm = accelerator.reduce(torch.stack([loss_sum, grad_norm.detach().float()]),
                                                      reduction="mean").tolist()
            # fp16's loss scaler skips a step whose scaled gradients overflowed (and lowers the scale): expected
            norm_bad = not math.isfinite(step_norm) and not accelerator.optimizer_step_was_skipped
            if not math.isfinite(step_loss) or norm_bad:
                what = f"the loss is {step_loss}" if not math.isfinite(step_loss) else \
                    f"the gradient norm is {step_norm} (loss {step_loss:.5f})"
                raise SharedStop(f"[{stage.name}] {what} at step {global_step}: training diverged; nothing of it was "
                                 f"saved — the last good checkpoint is "
                                 f"{ckpt.latest_checkpoint(cfg.output_dir) or 'none'}; resume from it with a lower "
                                 "learning_rate, max_grad_norm set, or mixed_precision=\"bf16\"/\"no\" instead of "
                                 "fp16")
            loss_sum.zero_()
            lr = lr_scheduler.get_last_lr()[0]
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            if report:
                accelerator.log({"train/loss": step_loss, "train/lr": lr, "train/grad_norm": step_norm},
                                step=global_step)
            if global_step % cfg.logging_steps == 0 or global_step == max_steps:
                log(f"[{stage.name}] step {global_step}/{max_steps} loss {step_loss:.5f} lr {lr:.3e} "
                    f"({(time.time() - start):.1f} s)", event="step", step=global_step, epoch=epoch,
                    loss=step_loss, lr=lr)
            if image_batch is None:
                image_batch = dict(batch)  # a fixed batch for the sample grids
            if report and cfg.image_log_steps and global_step % cfg.image_log_steps == 0:
                _log_images(accelerator, stage, model, image_batch, cfg, global_step)
            profiler.lap("logging")
            if global_step % cfg.checkpointing_steps == 0:
                save(epoch)
                saved_step = global_step
                profiler.lap("checkpoint")
            profiler.end_step()
            if global_step >= max_steps:
                break
        consumed = 0
        if global_step >= max_steps:
            break
    progress.close()
    if saved_step != global_step:
        save(epoch)  # the final save
    final = trainer_state(epoch)
    profile = profiler.report()
    if profile:
        final["profile_ms"] = profile
        log(f"[{stage.name}] profile, ms per optimizer step: " + ", ".join(f"{k} {v}" for k, v in profile.items()),
            event="profile", **profile)
    counts = ", ".join(f"{k}: {v}" for k, v in final["skipped"].items()) or "none"
    at_index = ", ".join(f"{k}: {v}" for k, v in index_skips.items()) or "none"
    log(f"[{stage.name}] done at step {global_step} in {time.time() - start:.1f} s; skipped samples — while "
        f"training, each once: {counts}; when indexing the data: {at_index}; filtered: {brief(filtered)}",
        event="end", step=global_step, skipped=final["skipped"], skipped_at_index=index_skips,
        filtered_at_index=filtered, seconds=round(time.time() - start, 2))
    accelerator.end_training()
    return final


def _agreed_resume(cfg, accelerator):
    """The checkpoint to resume from, chosen by rank 0 (ranks listing a shared disk each on their own can see
    different newest checkpoints right after a save: node-local caches, NFS attribute caching) and checked to be
    visible on every rank; a rank that cannot see it stops every rank with one line."""
    path = distributed.rank_zero_choice(ckpt.resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
                                        if accelerator.is_main_process else None)
    if path is not None:
        blind, = distributed.ranks_flagged([not os.path.isfile(os.path.join(path, ckpt.STATE_FILE))],
                                           accelerator.device)
        if blind:
            raise SharedStop(f"resume_from_checkpoint: {distributed.names(blind)} cannot see {path}, the checkpoint "
                             f"rank 0 resumes from: output_dir must be on storage every rank shares (or wait until "
                             "it has synced), then relaunch")
    return path


def _check_first_batch(loss: torch.Tensor, stage, precision: TrainPrecision, device) -> None:
    """Every rank stops together, with the fix, when any rank's first batch gave non-finite inputs (the stage's
    checks, e.g. a frozen VAE that overflows float16) or a non-finite loss: the flags are gathered, so no rank goes on
    into the gradient all-reduce to wait there for one that stopped."""
    checks = stage.first_batch_checks() + [
        (not bool(torch.isfinite(loss.detach()).all()),
         f"the first batch's loss is not finite ({precision.in_effect}): the model overflows in reduced precision; "
         "set mixed_precision=\"bf16\" or \"no\"")]
    flagged = distributed.ranks_flagged([found for found, _ in checks], device)
    for (_, message), ranks in zip(checks, flagged):
        if ranks:
            raise SharedStop(f"[{stage.name}] {message} (on {distributed.names(ranks)})")


def _log_images(accelerator, stage, model, batch: dict, cfg, step: int) -> None:
    """A grid (rows per stage, ``image_log_count`` columns) to TensorBoard, main process only."""
    if not accelerator.is_main_process:
        return
    from torchvision.utils import make_grid  # lazy: torchvision takes ~1 s to import, needed for image logs only
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    generator = torch.Generator(device=accelerator.device).manual_seed(cfg.seed)  # the same noise every time
    rows = stage.images(unwrapped, batch, generator)
    unwrapped.train()
    n = min(cfg.image_log_count, batch["image"].shape[0])
    grid = make_grid(rows.cpu(), nrow=n)  # (3, H, W) in [0, 1]
    accelerator.get_tracker("tensorboard").log_images({f"{stage.name}/samples": grid[None]}, step,
                                                      dataformats="NCHW")
