"""Generation set-up shared by ``infer.py``, ``synthesize.py``, ``edit.py`` and the app: check the sampling config,
resolve the checkpoints, the scheduler folder and the condition sizes, load the pipeline once, denoise batches,
and the one resume rule.

Checkpoints may be model folders or training output folders (their latest checkpoint); ``resolution`` /
``ttf_size`` / ``max_len`` set to None take the UNet's training values (its checkpoint's training config, read as
data; ttf_size and max_len else from its TTF encoder). Every mistake is a one-line ConfigError raised before a
model loads.

Resume rule. A run records ``resume_record(cfg, run)``: every settings field whose ``resume`` flag is set, with
``resolved`` — what the checkpoint folders, the scheduler, the sizes (and the bench, the source's content) resolved
to — standing for the values it resolves. A rerun whose record differs is refused (:func:`check_resume`) instead of
mixing outputs: a new latest checkpoint is another run.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from diffusers_textssr import TextSSRPipeline, TextSSRUNet2DConditionModel, unet_layout
from diffusers_textssr.unet import checkpoint_shapes, ttf_geometry_from_weights

from textssr.runtime import precision
from textssr.config.checks import as_int, config_errors
from textssr.config import ConfigError, require_path
from textssr.data.fonts import resolve_font
from textssr.models import load_scheduler, load_unet, load_vae, resolve_model_dir
from textssr.models.loading import scheduler_folder, vae_scale_factor
from textssr.runtime.precision import (DTYPES, MixedPrecision, check_gpu_bf16, check_precision, configure_backends,
                                       dtype_name, gpu_mixed_precision, resolve_mixed_precision)
from textssr.config.run_config import read_run_config

SIZE_KEYS = ("resolution", "ttf_size", "max_len")  # None in a config: the UNet's training value
FAR_RESOLUTION = 4  # a resolution more than this factor from the UNet's training value needs allow_far_resolution
# Activation memory of one sample, in elements per output pixel per channel of the VAE decoder's widest full-size
# stage: tensors alive at once in its last up block (input, GroupNorm, SiLU, conv, upsampled skip, residual). The
# tiny models' peak RSS over their loaded weights (one CPU thread, fp32, one sampling step) measured 7-11 such elements
# at R = 128-512 (112 MiB at R=256, 292 at R=512, 60 more per extra sample at R=256); rounded up. The UNet, at 1/64 of
# the pixels, and attention (SDPA: memory linear in tokens) stay within that.
ACTIVATION_FACTOR = 12
MEMORY_MARGIN = 0.8  # use at most this share of the memory the device has free


@dataclass(frozen=True)
class Run:
    """The checked, resolved settings of one generation run."""
    vae_dir: str
    unet_dir: str
    scheduler_dir: Optional[str]
    dtype: Optional[torch.dtype]  # None: mixed_precision="auto", settled when the pipeline is loaded
    resolution: int
    ttf_size: Optional[int]  # None until the UNet is loaded (its TTF encoder's geometry)
    max_len: Optional[int]
    resolved: dict  # checkpoint folders, scheduler folder and sizes as resolved (part of the resume settings)
    precision: Optional[dict] = None  # how mixed_precision="auto" was settled
    mixed: Optional[MixedPrecision] = None  # the mixed-precision setting and where it came from

    def sizes(self) -> Dict[str, Optional[int]]:
        """resolution, ttf_size and max_len, as the dataset keywords and meta.json's conditions name them."""
        return dict(resolution=self.resolution, ttf_size=self.ttf_size, max_len=self.max_len)


def resolve_run(cfg, on_cpu: bool) -> Run:
    """Resolve what the sampling settings (textssr.generation.settings: every value already checked) name —
    precision, checkpoints, scheduler, sizes, font — and check that they fit together, before anything is loaded
    or written."""
    mixed = resolve_mixed_precision(cfg.mixed_precision)  # None: accelerate's setting
    precision = check_precision(mixed.name, "mixed_precision", on_cpu, source=mixed.source)
    vae_dir = resolve_checkpoint(cfg.pretrained_vae, "pretrained_vae", "vae")
    unet_dir = resolve_checkpoint(cfg.pretrained_unet, "pretrained_unet", "unet")
    scheduler_dir = resolve_scheduler_dir(cfg.scheduler_path, unet_dir)
    sizes = condition_sizes(cfg, unet_dir)
    check_far_resolution(sizes["resolution"], trained_resolution(unet_dir, vae_dir), cfg)
    resolve_font(cfg.font_path)  # a file that is not a font fails here, before any model loads
    resolved = dict(sizes, pretrained_vae=os.path.abspath(vae_dir), pretrained_unet=os.path.abspath(unet_dir),
                    scheduler_path=os.path.abspath(scheduler_dir) if scheduler_dir else None)
    if cfg.mixed_precision is None:
        resolved["mixed_precision"] = precision  # what accelerate's setting said: part of the resume rule
    # ttf_size / max_len the UNet's TTF encoder fixes, known before it loads (data is read before the models)
    encoder = encoder_geometry(unet_dir)
    if sizes["ttf_size"] is None:
        sizes["ttf_size"] = encoder["ttf_img_size"]
    if sizes["max_len"] is None:
        sizes["max_len"] = encoder["ttf_in_chans"]
    return Run(vae_dir, unet_dir, scheduler_dir, DTYPES.get(precision), resolved=resolved, mixed=mixed, **sizes)


def encoder_geometry(unet_dir: str) -> Dict[str, int]:
    """ttf_img_size and ttf_in_chans of the TTF encoder the UNet folder loads as, read without loading it: its
    config (our layout), its ttf_net weights' shapes (the original's), else the encoder's defaults (SD 2.1's unet,
    which gets a new encoder)."""
    defaults = {k: p.default for k, p in inspect.signature(TextSSRUNet2DConditionModel.__init__).parameters.items()
                if k.startswith("ttf_")}
    with config_errors(OSError, ValueError, KeyError, prefix=f"pretrained_unet: {unet_dir}: ", brief=True):
        layout = unet_layout(unet_dir)
        if layout == "textssr":
            with open(os.path.join(unet_dir, "config.json"), encoding="utf-8") as f:
                found = json.load(f)
        elif layout == "original":
            found = ttf_geometry_from_weights(checkpoint_shapes(unet_dir))
        else:
            found = {}
    return {k: int(found.get(k, defaults[k])) for k in ("ttf_img_size", "ttf_in_chans")}


def model_config(folder: str) -> dict:
    with config_errors(OSError, ValueError, prefix=f"{folder}: cannot read config.json: ", brief=True):
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            return json.load(f)


def trained_resolution(unet_dir: str, vae_dir: str) -> Optional[int]:
    """The resolution the UNet was trained at: its training config's, else its latent ``sample_size`` times the
    VAE's downsampling factor (what diffusers models record); None when neither is known."""
    trained = read_run_config(os.path.dirname(os.path.abspath(unet_dir))).get("resolution")
    if trained is not None:
        return int(trained)
    sample_size = model_config(unet_dir).get("sample_size")
    if isinstance(sample_size, int):
        return sample_size * vae_scale_factor(model_config(vae_dir))
    return None


def check_far_resolution(resolution: int, trained: Optional[int], cfg) -> None:
    """Refuse a resolution more than FAR_RESOLUTION times larger or smaller than the UNet's training value unless
    ``allow_far_resolution`` (nearer ones are warned about in :func:`condition_sizes`)."""
    allow = cfg.allow_far_resolution
    if not isinstance(allow, bool):
        raise ConfigError(f"allow_far_resolution={allow!r}: must be True or False")
    if trained and not allow and not trained / FAR_RESOLUTION <= resolution <= trained * FAR_RESOLUTION:
        raise ConfigError(f"resolution={resolution} is more than {FAR_RESOLUTION}x from the UNet's training value "
                          f"{trained}: its output would be meaningless and its memory grows with resolution²; use "
                          f"resolution={trained} (or None), or set allow_far_resolution=True")


def estimate_memory(run: Run, batch_size: int) -> int:
    """Bytes a denoising batch of ``batch_size`` at ``run.resolution`` needs: the weights (their files' size,
    halved in fp16/bf16) plus batch × ACTIVATION_FACTOR × R² × the channels of the VAE decoder's widest full-size
    stage × bytes per element. A constant-factor model of activations growing with R²; see ACTIVATION_FACTOR."""
    half = run.dtype in (torch.float16, torch.bfloat16)
    weights = sum(os.path.getsize(os.path.join(folder, name)) for folder in (run.vae_dir, run.unet_dir)
                  for name in os.listdir(folder) if name.startswith("diffusion_pytorch_model"))
    channels = [int(c) for c in model_config(run.vae_dir).get("block_out_channels", (128, 256))]
    widest = max(channels[:2])  # the last up block (channels[0]) and the upsampled input it gets (channels[1])
    element = 2 if half else 4
    return (weights // 2 if half else weights) + batch_size * ACTIVATION_FACTOR * run.resolution ** 2 * widest * element


def available_memory(device: torch.device) -> Optional[int]:
    """Free bytes on ``device``: the GPU's (torch.cuda.mem_get_info); on the CPU the RAM the kernel can give
    (MemAvailable), within a cgroup's limit; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = None
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:  # a container's memory limit (cgroup v2)
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limit = f.read().strip()
            if limit != "max":
                left = int(limit) - int(g.read())
                free = left if free is None else min(free, left)
    except (OSError, ValueError):
        pass
    return free


def check_memory(run: Run, batch_size: int, device: torch.device, key: str = "batch_size") -> int:
    """Refuse, before any model loads, a batch that cannot fit: :func:`estimate_memory` against MEMORY_MARGIN of
    :func:`available_memory`. ``key``: the config key (or flag) that sets the batch. Returns the estimate."""
    need, free = estimate_memory(run, batch_size), available_memory(device)
    if free is not None and need > MEMORY_MARGIN * free:
        fits = int((MEMORY_MARGIN * free - estimate_memory(run, 0)) // max(1, estimate_memory(run, 1)
                                                                          - estimate_memory(run, 0)))
        hint = f"{key}={fits}" if fits >= 1 else "a smaller resolution"
        raise ConfigError(f"resolution={run.resolution} with {key}={batch_size} needs about {need / 2**30:.1f} GiB "
                          f"but {device.type} has {free / 2**30:.1f} GiB free; use {hint} (estimate: weights + "
                          f"activations growing with resolution²)")
    return need


def resolve_checkpoint(path: str, key: str, subfolder: str) -> str:
    """A model folder (or training output folder → latest checkpoint) for ``key``, as a ConfigError if absent."""
    require_path(path, key, f"a `{subfolder}` model folder or a training output folder with checkpoint-*/{subfolder}")
    with config_errors(FileNotFoundError, ValueError, OSError, prefix=f"{key}: "):
        return str(resolve_model_dir(path, subfolder))


def resolve_scheduler_dir(path: Optional[str], unet_dir: str) -> Optional[str]:
    """The folder holding scheduler_config.json: ``path``'s ``scheduler/`` or ``path`` itself; else the
    ``scheduler/`` saved in the UNet's training checkpoint; else None = the built-in SD 2.1 config (warned)."""
    folder = scheduler_folder(path)
    if folder is not None:
        return folder
    trained = scheduler_folder(os.path.join(os.path.dirname(os.path.abspath(unet_dir)), "scheduler"))
    if trained is not None:
        print(f"scheduler: the one the UNet was trained with, {trained}"
              + (f" ({path} holds no scheduler_config.json)" if path else ""))
        return trained
    warnings.warn(f"scheduler_path={path!r} holds no scheduler_config.json; using the built-in SD 2.1 scheduler "
                  "config (scaled-linear betas 0.00085-0.012, 1000 steps, v-prediction)", stacklevel=2)
    return None


def condition_sizes(cfg, unet_dir: str) -> Dict[str, Optional[int]]:
    """resolution, ttf_size, max_len: the config's value or, where it is None, the UNet's training value (its
    checkpoint's training config, read as data; said on stdout). ttf_size/max_len without either stay None here and
    are read from the UNet's TTF encoder once it is loaded (:func:`fit_text_encoder`). A set value unlike the
    training one is warned about: running at another resolution is legitimate."""
    trained = read_run_config(os.path.dirname(os.path.abspath(unet_dir)))
    sizes = {}
    for key in SIZE_KEYS:
        value, was = getattr(cfg, key), trained.get(key)
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


# ----------------------------------------------------------------------------------------------- resume


def resume_record(cfg, run: Run) -> dict:
    """What decides a run's outputs, JSON-able: the settings' fields a resume must keep (their ``resume`` flag,
    textssr.config.settings), with ``resolved`` standing for the values it resolves (paths as absolute folders,
    None sizes as the UNet's)."""
    kept = {k: getattr(cfg, k) for k in type(cfg).resume_keys() if k not in run.resolved}
    plain = json.loads(json.dumps(kept, default=str))
    return dict(dict(sorted(plain.items())), resolved=dict(run.resolved))


def check_resume(before: Optional[dict], now: dict, where: str) -> None:
    """Refuse to continue, in ``where``, a run recorded with other settings (None: a fresh start)."""
    if before is None:
        return
    old, new = _flat(before), _flat(now)
    if old.get("resolved.source_content") != new.get("resolved.source_content"):
        raise ConfigError(f"{where} holds a run over another version of source={now.get('source')!r} (its "
                          "annotations or images changed since; regions are numbered by position, so the finished "
                          "items would no longer match it): restore the source or use a new output_dir")
    changed = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        raise ConfigError(f"{where} holds results made with other settings ({'; '.join(changed)}); restore them "
                          "or use a new output_dir")


def _flat(settings_: dict) -> dict:
    """``settings`` with the ``resolved`` dict spread out as ``resolved.<key>`` (for naming what changed)."""
    flat = {k: v for k, v in settings_.items() if k != "resolved"}
    flat.update({f"resolved.{k}": v for k, v in settings_.get("resolved", {}).items()})
    return flat


# ----------------------------------------------------------------------------------------------- models


def load_pipeline(run: Run, cfg, device: torch.device) -> Tuple[TextSSRPipeline, Run]:
    """TextSSRPipeline on ``device`` in ``run.dtype``, with the sampler ``cfg.scheduler`` and its
    ``timestep_spacing``; ttf_size / max_len are checked against the UNet's TTF encoder and the resolution against
    the VAE. Returns the pipeline and the run, whose mixed_precision="auto" is settled now (:func:`settle_precision`:
    a new Run, the given one is left as it was)."""
    check_gpu_bf16(device, mixed_precision=run.mixed.name if run.mixed else None)
    configure_backends(device, cfg.allow_tf32)
    vae, unet = load_vae(run.vae_dir).to(device).eval(), load_unet(run.unet_dir).to(device).eval()
    scheduler = load_scheduler(run.scheduler_dir, cfg.scheduler, timestep_spacing=cfg.timestep_spacing)
    pipe = TextSSRPipeline(vae=vae, unet=unet, scheduler=scheduler)
    check_text_encoder(run, pipe.unet)
    if run.resolution % pipe.vae_scale_factor:
        raise ConfigError(f"resolution={run.resolution} is not a multiple of the VAE's downsampling factor "
                          f"{pipe.vae_scale_factor}")
    if run.dtype is None:
        choice = settle_precision(pipe, run, device, cfg.batch_size)
        run = dataclasses.replace(run, dtype=choice.dtype, precision=choice.as_record("mixed_precision"))
    elif run.mixed is not None:
        print(f"{run.mixed.describe()}: {dtype_name(run.dtype)}")
    if run.dtype != torch.float32:
        pipe.vae.to(dtype=run.dtype)
        pipe.unet.to(dtype=run.dtype)
    return pipe, run


def settle_precision(pipe, run: Run, device: torch.device, batch_size: int):
    """mixed_precision="auto": bf16 (else fp16) on a GPU; on the CPU bf16 only where one sampling step of a batch
    (encode, UNet, decode) is measurably faster than in float32 (textssr.runtime.precision). Prints and returns the
    choice."""
    if device.type == "cuda":
        choice = gpu_mixed_precision(device)
    else:
        fast = TextSSRPipeline(vae=copy.deepcopy(pipe.vae).to(dtype=torch.bfloat16),
                               unet=copy.deepcopy(pipe.unet).to(dtype=torch.bfloat16), scheduler=pipe.scheduler)
        inputs = probe_inputs(pipe, run.resolution, min(batch_size, 4))

        def sampler(p):
            return lambda: p(*inputs, num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                             output_type="latent", show_progress=False)

        choice = precision.choose(device, sampler(pipe), sampler(fast))
    print(choice.describe("mixed_precision") + (f" (from {run.mixed.source})" if run.mixed else ""))
    return choice


def probe_inputs(pipe, resolution: int, batch: int):
    """Zero conditions of the right shapes for timing one pipeline call (ttf stack as the UNet's encoder wants)."""
    side = int(pipe.unet.config.ttf_img_size)
    ttf = torch.ones(batch, int(pipe.unet.config.ttf_in_chans), side, side)
    image = torch.zeros(batch, 3, resolution, resolution)
    return ttf, image + 1.0, image, torch.ones(batch, 1, resolution, resolution)


def check_text_encoder(run: Run, unet) -> None:
    """ttf_size and max_len are fixed by the UNet's TTF encoder (read from its folder by :func:`resolve_run`):
    refuse a mismatch with the loaded one."""
    img, chans = int(unet.config.ttf_img_size), int(unet.config.ttf_in_chans)
    if (img, chans) != (run.ttf_size, run.max_len):
        raise ConfigError(f"ttf_size={run.ttf_size}, max_len={run.max_len} do not match the UNet's TTF encoder "
                          f"(image {img}, {chans} channels); set --cfg-options ttf_size={img} max_len={chans}")


# ----------------------------------------------------------------------------------------------- sampling


def denoise(pipe, run: Run, samples: List[dict], generators: List[torch.Generator], steps: int,
            device: torch.device) -> np.ndarray:
    """Denoise one batch; ``generators`` (one CPU generator per sample) draw its initial latents, then the
    sampler's per-step noise. Returns the generated regions, uint8 (B, R, R, 3)."""
    factor = pipe.vae_scale_factor
    shape = (pipe.vae.config.latent_channels, run.resolution // factor, run.resolution // factor)
    latents = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, run.dtype)

    def stack(key):
        return torch.stack([s[key] for s in samples]).to(device, run.dtype)

    with torch.no_grad():
        out = pipe(stack("ttf_img"), stack("glyph"), stack("masked_image"), stack("mask"),
                   num_inference_steps=steps, generator=generators, latents=latents, output_type="np",
                   show_progress=False)
    return to_uint8(np.asarray(out.images))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1], (..., 3) → uint8, rounded."""
    return np.clip(np.round(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def real_region(sample: dict) -> np.ndarray:
    """The real R×R crop of ``sample`` (``image`` in [-1, 1]) as uint8 (R, R, 3)."""
    return to_uint8((sample["image"].permute(1, 2, 0).float().numpy() + 1.0) / 2.0)


def crop_box(image: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Cut (H, W, C) to ``box`` = (x0, y0, x1, y1), exclusive ends."""
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]
