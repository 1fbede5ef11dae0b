"""Drive OpenOCR's own recognition trainer from a TextSSR config: what ``train_str.py`` runs.

What is ours is only glue: locate the installed ``openocr-python`` package and import its trainer the way its
``tools/train_rec.py`` does (its folder on ``sys.path``); translate our mmengine config into an OpenOCR config (its
YAML, e.g. ``configs/rec/svtrv2/svtrv2_rctc.yml``, with data, output and schedule filled in); the data lists
(:mod:`textssr.str.data_list`) read by thin subclasses of OpenOCR's datasets (:mod:`openocr_datasets`); the process
group (:mod:`process_group`); resume; evaluation and its reports (:mod:`protocol`). Model, transforms, sampler,
loss, optimizer, schedule, the training loop, checkpoints and the metric are OpenOCR's.

Wrappers, none editing OpenOCR's files:
  * OpenOCR's ``openrec.metrics`` imports its formula-recognition metric (CMER) eagerly, which needs ``datasets``,
    ``evaluate``, ``rouge_score`` and ``Levenshtein`` — large packages a text recogniser never uses. Where they are
    missing, a stand-in module is registered for that one metric; asking for ``CMERMetric`` then fails with a line
    saying what to install.
  * :class:`StrTrainer` is OpenOCR's ``Trainer`` (its ``train`` loop and ``eval_step`` as they are) built by us:
    OpenOCR's constructor forms a process group only where it sees several GPUs, loads checkpoints with a full
    unpickler and logs to wandb; ours joins the group :mod:`process_group` formed (gloo on CPUs, NCCL on GPUs),
    wraps the model in DDP there, and loads weights with ``weights_only=True``. Its ``eval`` runs the unwrapped
    model without autocast (OpenOCR's evaluation scripts turn amp off): DDP's forward broadcasts SVTRv2's BatchNorm
    buffers, a collective the other ranks never join while rank 0 evaluates alone.
  * OpenOCR's trainer zeroes the gradients only when ``use_amp`` is on; an optimizer step hook zeroes them after
    every step (without it a float32 run accumulates gradients from step 1 and diverges).
  * OpenOCR writes ``latest.pth`` in place; a kill during the write would leave a truncated file that resume then
    cannot read. Its checkpoint module's ``torch.save`` goes through a temporary file and a rename instead.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import types
from typing import Dict, List, Optional, Sequence

from textssr.utils.errors import on_every_rank
from textssr.config import ConfigError
from textssr.config.checks import as_float, check_output_dir
from textssr.str import data_list as dl
from textssr.str import process_group as pg
from textssr.str import protocol
from textssr.str.settings import StrSettings
from textssr.utils.jsonio import read_json, write_json

INSTALL_HINT = "install it with `make install-str` (or the two pip commands in docs/str.md)"
CMER_DEPENDENCIES = ("datasets", "evaluate", "rouge_score", "Levenshtein")
_DECODERS = ("DecodeImage", "DecodeImagePIL")
_AUGMENT_OPS = ("SVTRAug", "ABINetAug", "PARSeqAug", "PARSeqAugPIL")
# OpenOCR's datasets our listed twins derive from (openocr_datasets), by the name a YAML gives for training
DATASETS = ("RatioDataSet", "RatioDataSetTVResize")
# the recognisers whose batches and metric the evaluation reads (CTC or autoregressive decoding, RecMetric):
# OpenOCR's SVTRv2 YAMLs svtrv2_rctc, svtrv2_ctc, svtrv2_small_rctc, svtrv2_tiny_rctc, and nrtr/svtrv2_nrtr
POSTPROCESS, METRIC = ("CTCLabelDecode", "ARLabelDecode"), ("RecMetric",)
RUN_SETTINGS = "train_str_settings.json"
# keys a resume may change
FREE_KEYS = ("test_data", "test_benchmarks", "benchmark_root", "num_workers", "torch_threads", "print_batch_step",
             "eval_batch_size", "ddp_timeout")
# Global keys of the OpenOCR config that our settings set (openocr_options may not)
OWN_GLOBAL = {"device": "device", "epoch_num": "epoch_num", "output_dir": "output_dir", "use_amp": "use_amp",
              "seed": "seed", "character_dict_path": "character_dict", "max_text_length": "max_text_length",
              "use_space_char": "use_space_char", "print_batch_step": "print_batch_step",
              "checkpoints": "--checkpoint", "eval_batch_step": "eval_step", "eval_epoch_step": "eval_step"}
# sections a test build at start-up checks whole (any keyword the class takes); elsewhere only the YAML's keys
BUILT_SECTIONS = ("Architecture", "Optimizer", "LRScheduler", "Loss", "PostProcess", "Metric")
# dataset keys OpenOCR's ratio datasets read with a default (so a YAML need not list them)
DATASET_KEYS = ("base_shape", "base_h", "padding_rand", "padding_doub")
LATEST, BEST, LOCK = "latest.pth", "best.pth", ".train_str.lock"


# ------------------------------------------------------------------------------------------------ importing


_ROOT: List[str] = []


def openocr_root() -> str:
    """The installed ``openocr`` package's folder (found without importing it: its ``__init__`` loads the ONNX
    inference stack). Remembered: once that folder is on ``sys.path``, its ``openocr.py`` shadows the package."""
    if not _ROOT:
        spec = importlib.util.find_spec("openocr")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"OpenOCR (PyPI openocr-python) is not installed; {INSTALL_HINT}")
        _ROOT.append(list(spec.submodule_search_locations)[0])
    return _ROOT[0]


class _AtomicTorch(types.ModuleType):
    """``torch`` for OpenOCR's checkpoint module: the same, except that ``save`` writes a temporary file and
    renames it into place."""

    def __init__(self, torch_module):
        super().__init__("torch")
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def save(self, obj, path, *args, **kwargs):
        tmp = f"{path}.tmp"
        self._torch.save(obj, tmp, *args, **kwargs)
        os.replace(tmp, path)


def _cmer_stand_in() -> types.ModuleType:
    module = types.ModuleType("openrec.metrics.rec_metric_cmer")

    class CMERMetric:  # noqa: D401 - a stand-in, see the module doc
        def __init__(self, *args, **kwargs):
            raise ConfigError("OpenOCR's CMERMetric (formula recognition) needs "
                              f"{', '.join(CMER_DEPENDENCIES)}: pip install them to use it")

    module.CMERMetric = CMERMetric
    return module


def import_openocr(register: bool = True) -> str:
    """Make OpenOCR's ``tools`` and ``openrec`` importable as its own scripts do; with ``register``, add our
    datasets, sampler and augmentation op to its registries and make its checkpoint writes atomic. Returns
    OpenOCR's folder."""
    root = openocr_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    name = "openrec.metrics.rec_metric_cmer"
    if name not in sys.modules and any(importlib.util.find_spec(m) is None for m in CMER_DEPENDENCIES):
        sys.modules[name] = _cmer_stand_in()
    if register:
        import torch
        import openrec.preprocess
        import tools.data
        import tools.utils.ckpt as ckpt
        for dataset in DATASETS:
            for twin in (f"Listed{dataset}", f"Listed{dataset}Test"):
                tools.data.DATASET_MODULES[twin] = "textssr.str.openocr_datasets"
        tools.data.SAMPLER_MODULES["ListedRatioSampler"] = "textssr.str.openocr_datasets"
        openrec.preprocess.MODULE_MAPPING["NumpyAugment"] = "textssr.str.openocr_datasets"
        if not isinstance(ckpt.torch, _AtomicTorch):
            ckpt.torch = _AtomicTorch(torch)
    return root


def openocr_file(path: str, root: str, key: str) -> str:
    """``path`` as given if it exists, else relative to the OpenOCR package; a ConfigError naming ``key``."""
    for candidate in (path, os.path.join(root, path)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ConfigError(f"{key}={path!r}: no such file here or in the OpenOCR package ({root})")


def read_yaml(path: str) -> dict:
    """An OpenOCR recognition config, read as data (``yaml.safe_load``); a ConfigError unless it is one."""
    import yaml

    if not path.endswith((".yml", ".yaml")):
        raise ConfigError(f"openocr_config={path!r}: not an OpenOCR YAML config (.yml), e.g. "
                          "configs/rec/svtrv2/svtrv2_rctc.yml")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"openocr_config={path!r}: unreadable YAML ({str(exc).splitlines()[0]})") from None
    needed = ("Global", "Architecture", "Optimizer", "LRScheduler", "Loss", "PostProcess", "Metric", "Train", "Eval")
    if not isinstance(cfg, dict) or any(not isinstance(cfg.get(k), dict) for k in needed):
        raise ConfigError(f"openocr_config={path!r}: not an OpenOCR recognition config (needs the sections "
                          f"{', '.join(needed)})")
    return cfg


# ---------------------------------------------------------------------------------------------- the config


def _path_and_ratio(text: str) -> dict:
    """``"PATH"`` or ``"PATH:RATIO"`` (the command line's way to give a ratio: ``train_data=[a:0.5,b]``)."""
    path, _, ratio = text.rpartition(":")
    try:
        return {"path": path, "ratio": float(ratio)} if path else {"path": text}
    except ValueError:
        return {"path": text}


def _sources(value, key: str, with_ratio: bool) -> List[dict]:
    """Normalise ``train_data`` (list of paths or dict(path, ratio)) entries."""
    out = []
    for entry in value:
        if isinstance(entry, str):
            entry = _path_and_ratio(entry) if with_ratio else {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ConfigError(f"{key}: each entry must be a path or dict(path=..., ratio=...), found {entry!r}")
        unknown = set(entry) - {"path", "ratio"}
        if unknown:
            raise ConfigError(f"{key}: unknown field(s) {sorted(unknown)} in {entry!r} (known: path, ratio)")
        ratio = as_float(entry.get("ratio", 1.0), f"{key} ratio", minimum=0.0, exclusive=True)
        if with_ratio and ratio > 1:
            raise ConfigError(f"{key}: ratio={ratio} for {entry['path']}: must be in (0, 1] (the fraction of that "
                              "source drawn per epoch, OpenOCR's ratio_list)")
        lmdbs = dl.find_str_lmdbs(entry["path"])
        if not lmdbs:
            raise ConfigError(f"{key}: no STR LMDB (data.mdb) at {entry['path']} — write one with synthesize.py "
                              "or python -m textssr.str.lmdb_convert")
        out += [{"path": p, "ratio": ratio} for p in lmdbs]
    return out


def _check_options(options: dict, yaml_cfg: dict, where: str = "openocr_options") -> None:
    """``openocr_options`` only names what the YAML has, with values of the same kind; under the sections a test
    build checks (BUILT_SECTIONS) it may add keywords. Our own settings are refused there (they name the key)."""
    for key, value in options.items():
        path = f"{where}.{key}"
        if where == "openocr_options" and key not in yaml_cfg:
            from textssr.config.loading import unknown_key_error
            raise unknown_key_error(path, [f"openocr_options.{k}" for k in yaml_cfg], "the OpenOCR config")
        if where == "openocr_options.Global" and key in OWN_GLOBAL:
            raise ConfigError(f"{path}: set by train_str.py's {OWN_GLOBAL[key]!r}; set that instead")
        if key not in yaml_cfg:
            dataset_key = where in ("openocr_options.Train.dataset", "openocr_options.Eval.dataset") and \
                key in DATASET_KEYS
            if not dataset_key and not path.startswith(tuple(f"openocr_options.{s}." for s in BUILT_SECTIONS)):
                known = ", ".join(sorted(map(str, yaml_cfg))) or "none"
                raise ConfigError(f"{path}: no such key in openocr_config (known here: {known})")
            continue
        base = yaml_cfg[key]
        if isinstance(base, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}={value!r}: must be a dict (a section of the OpenOCR config)")
            _check_options(value, base, path)
        elif base is not None and value is not None:
            number = (int, float)
            same = (isinstance(base, bool) == isinstance(value, bool) and
                    (isinstance(base, number) and isinstance(value, number) or
                     isinstance(base, str) and isinstance(value, str) or
                     isinstance(base, list) and isinstance(value, (list, tuple))))
            if not same:
                raise ConfigError(f"{path}={value!r}: must be like the OpenOCR config's value {base!r}")


def check_config(settings: StrSettings, eval_only: bool = False, checkpoint: Optional[str] = None) -> dict:
    """What the settings (each value checked already: textssr.str.settings) name, resolved and checked — the data
    sources, OpenOCR's config and character dictionary, the output folder (ConfigError, one line) — as the plain
    dict the rest of this module reads. ``s["warnings"]``: what is allowed but probably a mistake."""
    root = openocr_root()
    s = copy.deepcopy(settings.to_dict())
    s["openocr_config"] = openocr_file(s["openocr_config"], root, "openocr_config")
    s["character_dict"] = openocr_file(s["character_dict"], root, "character_dict")
    dl.read_charset(s["character_dict"], s["use_space_char"])  # a ConfigError when it is no character list
    yaml_cfg = read_yaml(s["openocr_config"])
    _check_options(s.get("openocr_options") or {}, yaml_cfg)
    merged = _merge(copy.deepcopy(yaml_cfg), s.get("openocr_options") or {})
    _check_supported(merged, s["openocr_config"])
    decoder = (merged["Architecture"].get("Decoder") or {}).get("name")
    if decoder == "NRTRDecoder" and not pg.uses_cuda(s["device"]):
        raise ConfigError(f"openocr_config={s['openocr_config']}: OpenOCR 0.1.5's NRTRDecoder runs on CUDA only (its "
                          "attention mask is built on tensor.get_device(), -1 on the CPU); run it on a GPU")
    out = os.path.realpath(os.path.abspath(s["output_dir"]))
    if out == os.path.dirname(out) or out == os.path.realpath(os.path.expanduser("~")):
        raise ConfigError(f"output_dir={s['output_dir']!r}: a filesystem root or home folder; name a folder of its "
                          "own (the run writes checkpoints, data_lists/ and eval/ there)")
    check_output_dir(s["output_dir"])
    s["train_sources"] = _sources(s["train_data"], "train_data", with_ratio=True) if not eval_only else []
    s["val_sources"] = _sources([s["val_data"]], "val_data", with_ratio=False) if s.get("val_data") else []
    s["test_sets"] = protocol.resolve_test_sets(s["test_data"] or {}, s["test_benchmarks"] or [], s["benchmark_root"])
    s["checkpoint"] = None
    if eval_only:
        ckpt = checkpoint or os.path.join(s["output_dir"], LATEST)
        if not os.path.isfile(ckpt):
            raise ConfigError(f"--checkpoint {ckpt}: no such file" + ("" if checkpoint else
                              f" (no run in output_dir={s['output_dir']}; give --checkpoint PATH)"))
        if not s["test_sets"]:
            raise ConfigError("--eval-only needs test sets: set test_data or test_benchmarks")
        s["checkpoint"] = os.path.abspath(ckpt)
    s["warnings"] = _warnings(s)
    import_openocr()
    build_once(translate(s, [], [], None))  # every OpenOCR builder once, before any data is read
    return s


def _check_supported(cfg: dict, path: str) -> None:
    """The YAMLs this glue runs whole (train and evaluate); others are refused at start-up."""
    names = {cfg["Train"].get("dataset", {}).get("name"), cfg["Eval"].get("dataset", {}).get("name")}
    problems = []
    if not names <= set(DATASETS):
        problems.append(f"its datasets {sorted(map(str, names))} (supported: {', '.join(DATASETS)})")
    if cfg["PostProcess"].get("name") not in POSTPROCESS or cfg["Metric"].get("name") not in METRIC:
        problems.append(f"its decoding {cfg['PostProcess'].get('name')} / metric {cfg['Metric'].get('name')} "
                        f"(supported: {', '.join(POSTPROCESS)} with {', '.join(METRIC)})")
    if problems:
        raise ConfigError(f"openocr_config={path}: train_str.py does not run {' and '.join(problems)}; use "
                          "configs/rec/svtrv2/svtrv2_rctc.yml (or svtrv2_ctc, svtrv2_small_rctc, svtrv2_tiny_rctc, "
                          "nrtr/svtrv2_nrtr.yml)")


def _warnings(s: dict) -> List[str]:
    seen, out = {}, []
    for src in s["train_sources"]:
        real = os.path.realpath(src["path"])
        if real in seen:
            out.append(f"train_data names {src['path']} twice: it is drawn twice as often")
        seen[real] = src["path"]
    for name, t in s["test_sets"].items():
        if os.path.realpath(t["path"]) in seen:
            out.append(f"test set {name} ({t['path']}) is also a training source: its accuracy is not a test result")
    for v in s["val_sources"]:
        if os.path.realpath(v["path"]) in {os.path.realpath(t["path"]) for t in s["test_sets"].values()}:
            out.append(f"val_data {v['path']} is also a test set: choosing the best checkpoint on it biases that "
                       "test result")
    return out


def _merge(base: dict, override: dict) -> dict:
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _plain(obj):
    """Plain dicts and lists: the config is saved inside every checkpoint, which resume reads with
    ``torch.load(weights_only=True)``."""
    return json.loads(json.dumps(obj))


def _label_ops(transforms: Sequence[dict]) -> List[dict]:
    return [op for op in transforms if next(iter(op)) not in _DECODERS + _AUGMENT_OPS]


def _decoder(transforms: Sequence[dict]) -> dict:
    found = [op for op in transforms if next(iter(op)) in _DECODERS]
    return copy.deepcopy(found[0]) if found else {"DecodeImage": {"img_mode": "BGR", "channel_first": False}}


def learning_rate(s: dict) -> float:
    """``learning_rate``, or under ``lr_scaling="linear"`` that value × (the global batch / ``lr_reference_batch``)
    — the linear rule (Goyal et al.) for a GPU count or batch other than the schedule's."""
    if s["lr_scaling"] != "linear":
        return s["learning_rate"]
    return s["learning_rate"] * s["batch_size"] * pg.world_size() / s["lr_reference_batch"]


def translate(s: dict, train_lists: Sequence[str], val_lists: Sequence[str], checkpoint: Optional[str]) -> dict:
    """The OpenOCR config of this run: ``s['openocr_config']`` with our keys filled in, then ``openocr_options``."""
    oc = _merge(copy.deepcopy(read_yaml(s["openocr_config"])), s.get("openocr_options") or {})
    g = oc["Global"]
    validate = bool(val_lists)
    g.update(device=s["device"], epoch_num=s["epoch_num"], output_dir=os.path.abspath(s["output_dir"]),
             character_dict_path=s["character_dict"], max_text_length=s["max_text_length"],
             use_space_char=s["use_space_char"], use_amp=s["use_amp"], seed=s["seed"],
             print_batch_step=s["print_batch_step"], use_tensorboard=False, checkpoints=checkpoint,
             cal_metric_during_train=False,  # with RecMetric(with_ratio) it would log zeros
             pretrained_model=None, save_epoch_step=[s["epoch_num"] + 1, 1],  # only latest.pth (OpenOCR's resume)
             # validation (best.pth): every eval_step iterations and after each epoch, OpenOCR's own schedule
             eval_batch_step=[0, s["eval_step"] or 10 ** 12] if validate else 10 ** 12,
             eval_epoch_step=[0, 1] if validate else [10 ** 12, 1],
             save_iter_step=[10 ** 12, 10 ** 12], save_res_path=None)
    g.setdefault("log_smooth_window", 20)
    oc["Optimizer"]["lr"] = learning_rate(s)
    train = oc["Train"]
    label_ops = _label_ops(train["dataset"]["transforms"])
    decode = _decoder(train["dataset"]["transforms"])
    augment = []
    if s["augment"]:
        pil = next(iter(decode)) == "DecodeImagePIL"
        augment = [{"NumpyAugment": {"op": s["augment"]}} if pil else {s["augment"]: None}]
    base = train["dataset"]["name"]
    train["dataset"] = {
        "name": f"Listed{base}", "ds_width": True, "padding": train["dataset"].get("padding", False),
        "base_shape": train["dataset"].get("base_shape", [[64, 64], [96, 48], [112, 40], [128, 32]]),
        "data_dir_list": [x["path"] for x in s["train_sources"]],
        "ratio_list": [x["ratio"] for x in s["train_sources"]],
        "data_lists": list(train_lists), "samples_per_epoch": s["samples_per_epoch"],
        "transforms": [decode] + augment + label_ops}
    train["sampler"].update(name="ListedRatioSampler", first_bs=s["batch_size"])
    train["loader"].update(batch_size_per_card=s["batch_size"], num_workers=s["num_workers"])
    ev = oc["Eval"]
    eval_ops = copy.deepcopy(_label_ops(ev["dataset"]["transforms"]))
    keep = eval_ops[-1].get("KeepKeys", {}).get("keep_keys", [])
    if "real_ratio" not in keep:  # RecMetric(with_ratio) reads each sample's ratio, as OpenOCR's eval_rec_all_en
        keep.append("real_ratio")
    ev["dataset"] = {"name": f"Listed{ev['dataset']['name']}Test", "ds_width": True, "padding": False,
                     "base_shape": ev["dataset"].get("base_shape", [[64, 64], [96, 48], [112, 40], [128, 32]]),
                     "data_dir_list": [x["path"] for x in s["val_sources"]], "data_lists": list(val_lists),
                     "transforms": [_decoder(ev["dataset"]["transforms"])] + eval_ops}
    ev["sampler"].update(name="ListedRatioSampler", first_bs=s["eval_batch_size"])
    ev["loader"].update(batch_size_per_card=s["eval_batch_size"], num_workers=min(s["num_workers"], 2))
    oc["Metric"].update(with_ratio=True, max_len=s["max_text_length"], max_ratio=12)
    _set_everywhere(oc, {"character_dict_path": s["character_dict"], "max_text_length": s["max_text_length"],
                         "use_space_char": s["use_space_char"]})
    return _plain(oc)


def _set_everywhere(tree, values: dict) -> None:
    """Give every occurrence of these keys (label encoders, decoders: the YAML repeats them) our one value."""
    if isinstance(tree, dict):
        for k in tree:
            if k in values:
                tree[k] = values[k]
            else:
                _set_everywhere(tree[k], values)
    elif isinstance(tree, list):
        for item in tree:
            _set_everywhere(item, values)


def build_once(oc: dict) -> None:
    """Build OpenOCR's model, loss, decoder, metric, optimizer and the training transforms of ``oc`` once on the
    CPU: a bad ``openocr_options`` value, or an augmentation whose package is missing, is one line at start-up."""
    import_openocr()
    from openrec.losses import build_loss
    from openrec.metrics import build_metric
    from openrec.modeling import build_model
    from openrec.optimizer import build_optimizer
    from openrec.postprocess import build_post_process
    from openrec.preprocess import create_operators

    what = "the model"
    try:
        arch = copy.deepcopy(oc["Architecture"])
        post = build_post_process(copy.deepcopy(oc["PostProcess"]), oc["Global"])
        arch["Decoder"]["out_channels"] = post.get_character_num()
        model = build_model(arch)
        what = "the loss, metric or optimizer"
        build_loss(copy.deepcopy(oc["Loss"]))
        build_metric(copy.deepcopy(oc["Metric"]))
        build_optimizer(oc["Optimizer"], oc["LRScheduler"], epochs=oc["Global"]["epoch_num"], step_each_epoch=10,
                        model=model)
        what = "the training transforms (augment)"
        create_operators(oc["Train"]["dataset"]["transforms"], oc["Global"])
    except ConfigError:
        raise
    except Exception as exc:  # OpenOCR's builders raise anything; what matters is the line naming it
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ConfigError(f"OpenOCR cannot build {what} from openocr_config + openocr_options + augment "
                          f"({detail})") from None


# -------------------------------------------------------------------------------------------- data lists


def build_lists(s: dict, sources: Sequence[dict], what: str, log=print, test: bool = False) -> List[dl.DataList]:
    """The data list of each source (cached under ``output_dir/data_lists``). Rank 0 scans while the other ranks
    of a distributed run wait; then they read its lists."""
    charset = dl.read_charset(s["character_dict"], s["use_space_char"])
    cache = os.path.join(s["output_dir"], "data_lists")

    def scan():
        for src in sources:
            def progress(done, total, path=src["path"]):
                if total > 5000 and (done % 100000 < 5000 or done == total):
                    log(f"checking {what} {path}: {done}/{total}")
            dl.data_list(src["path"], charset, s["max_text_length"], s["use_space_char"], cache, progress, test)
    with pg.waiting(s["ddp_timeout"], f"rank 0 checks the samples of the {what}"):
        _rank0_decides(scan)  # a bad file is the same one line on every rank
    out = []
    for src in sources:
        found = dl.cached_list(src["path"], charset, s["max_text_length"], s["use_space_char"], cache, test)
        if found is None:  # rank 0 just wrote it: only a changed LMDB (or a removed cache) gets here
            raise ConfigError(f"{src['path']} changed while the run started; rerun")
        out.append(found)
    return out


def describe(lists: Sequence[dl.DataList]) -> str:
    skipped = dl.merge_skips(lists)
    notes = {}
    for x in lists:
        for k, v in x.notes.items():
            notes[k] = notes.get(k, 0) + v
    parts = [f"{sum(len(x) for x in lists)} samples"]
    if skipped:
        parts.append("skipped " + ", ".join(f"{n} {r}" for r, n in sorted(skipped.items(), key=lambda kv: -kv[1])))
    if notes:
        parts.append("; ".join(f"{n} {r}" for r, n in notes.items()))
    return "; ".join(parts)


def list_file(lst: dl.DataList, s: dict, test: bool = False) -> str:
    return dl.list_path(lst.lmdb_path, os.path.join(s["output_dir"], "data_lists"), test)


# ------------------------------------------------------------------------------------------------ the trainer


def _trainer_class():
    import torch
    from tools.engine.trainer import Trainer

    class StrTrainer(Trainer):
        """OpenOCR's Trainer built by us (module doc): ``train`` and ``eval_step`` are OpenOCR's."""

        def __init__(self, cfg: dict, log_file: Optional[str], training: bool, weights: Optional[str] = None):
            from tools.data import build_dataloader
            from tools.engine.config import print_dict
            from tools.utils.logging import get_logger
            from openrec.optimizer import build_optimizer

            self.cfg, self.task, self.writer = cfg, "rec", None
            distributed = torch.distributed.is_initialized()
            self.cfg["Global"]["distributed"] = distributed
            self.local_rank = pg.local_rank() if distributed else 0
            cuda = pg.uses_cuda(cfg["Global"]["device"])
            self.device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
            self.logger = get_logger("openrec", log_file)
            print_dict(cfg, self.logger.info)  # the whole OpenOCR config in train.log, as OpenOCR logs it
            if training and pg.rank() == 0:
                import yaml
                with open(os.path.join(cfg["Global"]["output_dir"], "config.yml"), "w") as f:
                    yaml.safe_dump(cfg, f, sort_keys=False)
            self.set_random_seed(cfg["Global"].get("seed", 48))
            self.train_dataloader = self.valid_dataloader = None
            if training:
                self.train_dataloader = build_dataloader(cfg, "Train", self.logger)
                self.logger.info(f"train dataloader has {len(self.train_dataloader)} iters")
                if cfg["Eval"]["dataset"]["data_lists"]:
                    self.valid_dataloader = build_dataloader(cfg, "Eval", self.logger)
            self._init_rec_model()
            self.model = self.model.to(self.device)
            self.use_transformers = False
            self.accumulation_steps = cfg["Global"].get("accumulation_steps", 1)
            self.grad_clip_val = cfg["Global"].get("grad_clip_val", 0)
            self.optimizer = self.lr_scheduler = None
            if training:
                self.optimizer, self.lr_scheduler = build_optimizer(
                    cfg["Optimizer"], cfg["LRScheduler"], epochs=cfg["Global"]["epoch_num"],
                    step_each_epoch=len(self.train_dataloader), model=self.model)
                # OpenOCR 0.1.5 zeroes the gradients only on its use_amp path: without amp they add up over the
                # whole run. Zeroing them after every optimizer step leaves the amp path as it was.
                self.optimizer.register_step_post_hook(
                    lambda optimizer, args, kwargs: optimizer.zero_grad(set_to_none=True))
            self.status = self._load(weights or cfg["Global"].get("checkpoints"))
            if distributed and training:
                self.model = torch.nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.device.index] if cuda else None)
            self.scaler = torch.amp.GradScaler() if cfg["Global"].get("use_amp") and training else None
            self.logger.info(f"run with torch {torch.__version__} on {self.device}"
                             + (f", rank {pg.rank()} of {pg.world_size()}" if distributed else ""))

        def _load(self, path: Optional[str]) -> dict:
            """Resume (weights, optimizer, schedule, step) or evaluate a checkpoint: read as data."""
            if not path:
                self.logger.info("train from scratch")
                return {}
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                weights = state.get("state_dict", state) if isinstance(state, dict) else state
                self.model.load_state_dict(weights, strict=True)
                if self.optimizer is not None:
                    self.optimizer.load_state_dict(state["optimizer"])
                    self.lr_scheduler.load_state_dict(state["scheduler"])
            except Exception as exc:  # truncated, not a checkpoint, or weights of another model
                detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                raise ConfigError(f"checkpoint {path} cannot be used ({detail}); a truncated latest.pth: delete it "
                                  "to start afresh; another model's weights: set openocr_config/openocr_options "
                                  "to its architecture") from None
            self.logger.info(f"resume from checkpoint {path} (epoch {state.get('epoch', '?')})")
            if "epoch" not in state:
                return {}
            return {"global_step": int(state["global_step"]), "epoch": int(state["epoch"]) + 1,
                    "metrics": state.get("metrics") or {}}

        def unwrapped(self):
            return getattr(self.model, "module", self.model)

        def eval(self):
            """OpenOCR's metric over ``self.valid_dataloader``: the unwrapped model, float32 (module doc)."""
            model = self.unwrapped()
            model.eval()
            self.eval_class.reset()
            with torch.no_grad():
                for batch in self.valid_dataloader:
                    tensors = [t.to(self.device) for t in batch]
                    preds = model(tensors[0], data=tensors[1:])
                    self.eval_class(self.post_process_class(preds, [t.numpy() for t in batch]),
                                    [t.numpy() for t in batch])
                metric = self.eval_class.get_metric()
            self.model.train()
            return metric

    return StrTrainer


# ------------------------------------------------------------------------------------------------ the run


def settings_of(s: dict) -> dict:
    return _plain({k: v for k, v in s.items()
                   if k not in FREE_KEYS + ("test_sets", "warnings", "checkpoint", "val_sources")})


def resume_checkpoint(s: dict) -> Optional[str]:
    """OpenOCR's ``latest.pth`` of a previous run of the same settings (None for a new run); a ConfigError when
    ``output_dir`` holds a run of other settings."""
    out = s["output_dir"]
    latest = os.path.join(out, LATEST)
    saved = os.path.join(out, RUN_SETTINGS)
    if os.path.isfile(saved):
        before, now = read_json(saved), settings_of(s)
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed and os.path.isfile(latest):
            raise ConfigError(f"output_dir={out} holds a run with other settings ({', '.join(changed)} differ); "
                              "rerun with the same config to resume, or choose another output_dir")
    return latest if os.path.isfile(latest) else None


def checkpoint_info(path: str) -> dict:
    """Which model was evaluated: the checkpoint file, its epoch and optimizer step (where it records them)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    info = {"path": os.path.abspath(path)}
    if isinstance(state, dict) and "epoch" in state:
        info.update(epoch=int(state["epoch"]), global_step=int(state["global_step"]))
    return info


class _Lock:
    """One run per ``output_dir``: an exclusive ``flock`` held by rank 0 (released when the process ends, however
    it ends)."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK)
        self.file = None

    def take(self) -> Optional[str]:
        import fcntl
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            self.file = None
            return (f"output_dir={os.path.dirname(self.path)} is in use by another train_str.py (pid {holder}); "
                    "wait for it to end, or choose another output_dir")
        self.file.truncate(0)
        self.file.write(str(os.getpid()))
        self.file.flush()
        return None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _rank0_decides(fn):
    """``fn()`` on rank 0 (None or a ConfigError's message) → the same ConfigError on every rank, its line printed
    once (by rank 0: the others could be stopped by the launcher before they print)."""
    message = None
    if pg.rank() == 0:
        try:
            message = fn()
        except ConfigError as exc:
            message = str(exc)
    message = pg.broadcast(message)
    if message:
        raise on_every_rank(ConfigError(message))


def run(s: dict, eval_only: bool = False, log=print) -> Optional[dict]:
    """The whole run (train, then evaluate; or only evaluate ``s['checkpoint']``); the metrics on rank 0."""
    import_openocr()
    if s["torch_threads"]:
        import torch
        torch.set_num_threads(s["torch_threads"])
    if eval_only and pg.rank() != 0:
        return None  # evaluation is rank 0's alone: a one-process job
    distributed = not eval_only and pg.form(s["device"], s["ddp_timeout"])
    os.makedirs(s["output_dir"], exist_ok=True)
    lock = _Lock(s["output_dir"])
    try:
        _rank0_decides(lock.take)
        for line in s["warnings"] if pg.rank() == 0 else ():
            log(f"warning: {line}")
        if eval_only:
            return evaluate_checkpoint(s, s["checkpoint"], log)
        trainer = train(s, log)
        pg.barrier(s["ddp_timeout"], "rank 0 writes the last checkpoint")
        if distributed:
            pg.leave()  # the evaluation below is rank 0's alone: no collective may follow
        if pg.rank() != 0:
            return None
        return evaluate_all(s, trainer, log)
    finally:
        lock.release()
        pg.leave()


def train(s: dict, log=print):
    """OpenOCR's training of this run (resumed where ``latest.pth`` exists); returns the trainer."""
    box = {}

    def start():
        box["checkpoint"] = resume_checkpoint(s)
    _rank0_decides(start)
    checkpoint = pg.broadcast(box.get("checkpoint"))
    train_lists = build_lists(s, s["train_sources"], "training set", log)
    val_lists = build_lists(s, s["val_sources"], "validation set", log, test=True)
    if pg.rank() == 0:
        for lst in train_lists:
            log(f"train {lst.lmdb_path}: {describe([lst])}")
        for lst in val_lists:
            log(f"validation {lst.lmdb_path}: {describe([lst])}")
    if not sum(len(x) for x in train_lists):
        raise ConfigError(f"nothing to train on: no sample of train_data passes the checks ({describe(train_lists)}); "
                          "see docs/str.md, 'Bad input'")
    if val_lists and not sum(len(x) for x in val_lists):
        raise ConfigError(f"val_data {s['val_data']}: no sample passes the checks ({describe(val_lists)})")
    oc = translate(s, [list_file(x, s) for x in train_lists], [list_file(x, s, True) for x in val_lists], checkpoint)
    if pg.rank() == 0:
        write_json(settings_of(s), os.path.join(s["output_dir"], RUN_SETTINGS))
        write_json({"train": [x.report() for x in train_lists], "validation": [x.report() for x in val_lists]},
                   os.path.join(s["output_dir"], "data_report.json"))
        if checkpoint:
            log(f"resuming from {checkpoint}")
    trainer = _trainer_class()(oc, os.path.join(s["output_dir"], "train.log"), training=True)
    with pg.waiting(s["ddp_timeout"], "in training: DDP's gradient reduction, while rank 0 may be evaluating the "
                    "validation set or writing a checkpoint"):
        trainer.train()
    return trainer


def evaluate_checkpoint(s: dict, checkpoint: str, log=print) -> dict:
    """``--eval-only``: the checkpoint on every test set; nothing but the reports is written."""
    oc = translate(s, [], [], None)
    trainer = _trainer_class()(oc, None, training=False, weights=checkpoint)
    return evaluate_all(s, trainer, log, checkpoint)


def evaluate_all(s: dict, trainer, log=print, checkpoint: Optional[str] = None) -> dict:
    """Every test set, one table (:mod:`protocol`), ``metrics.json`` (and ``eval/<set>/metrics.json``). The run's
    ``latest.pth`` comes with its ``best.pth`` where validation kept one: both are scored (``best`` in
    ``metrics.json``, ``eval_best/<set>/``)."""
    latest = os.path.join(s["output_dir"], LATEST)
    checkpoint = checkpoint or latest
    lists = {name: build_lists(s, [{"path": t["path"]}], f"test set {name}", log, test=True)
             for name, t in s["test_sets"].items()}
    for name in lists:
        log(f"test {name}: {describe(lists[name])}")
    result = _score(s, trainer, checkpoint, lists, "eval", log)
    if not lists:
        result["note"] = "no test set configured (test_data, test_benchmarks): no evaluation ran"
        log("no evaluation ran: no test set is configured (test_data, test_benchmarks)")
    best = os.path.join(s["output_dir"], BEST)
    if lists and os.path.abspath(checkpoint) == os.path.abspath(latest) and os.path.isfile(best):
        chosen = _trainer_class()(translate(s, [], [], None), None, training=False, weights=best)
        result["best"] = _score(s, chosen, best, lists, "eval_best", log)
        result["best"]["checkpoint"]["validation"] = trainer_metrics_of(best)
    write_json(result, os.path.join(s["output_dir"], "metrics.json"))
    log(f"metrics → {os.path.join(s['output_dir'], 'metrics.json')}")
    return result


def _score(s: dict, trainer, checkpoint: str, lists: Dict[str, List[dl.DataList]], folder: str, log=print) -> dict:
    """One checkpoint on every test set: the reports, the group averages, its table."""
    info = dict(checkpoint_info(checkpoint), weights_sha256=weights_digest(trainer.unwrapped()))
    reports = {name: evaluate_set(trainer, s, name, s["test_sets"][name], lists[name], info, folder)
               for name in lists}
    result = protocol.summary(s["test_sets"], reports)
    result["checkpoint"] = info
    if reports:
        where = f"epoch {info['epoch']}, step {info['global_step']}" if "epoch" in info else "no epoch recorded"
        log(f"{os.path.basename(checkpoint)} ({where}):")
        for line in protocol.table(result):
            log(line)
    return result


def weights_digest(model) -> str:
    """A fingerprint of the weights evaluated (the same model scores the same, however it was loaded)."""
    import hashlib
    import torch
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def trainer_metrics_of(path: str) -> dict:
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in (state.get("metrics") or {}).items() if isinstance(v, (int, float))}


def evaluate_set(trainer, s: dict, name: str, test_set: dict, lists: Sequence[dl.DataList], info: dict,
                 folder: str = "eval") -> dict:
    """OpenOCR's RecMetric (``with_ratio``) on one test set; its ``<folder>/<name>/metrics.json``."""
    from tools.data import build_dataloader

    report = {"test_set": name, "lmdbs": [x.lmdb_path for x in lists], "skipped": dl.merge_skips(lists),
              "notes": {k: v for x in lists for k, v in x.notes.items()}, "num_samples": sum(len(x) for x in lists)}
    if test_set.get("expected") is not None:
        report["expected_samples"] = test_set["expected"]
    if report["num_samples"]:
        cfg = copy.deepcopy(trainer.cfg)
        cfg["Eval"]["dataset"]["data_dir_list"] = [x.lmdb_path for x in lists]
        cfg["Eval"]["dataset"]["data_lists"] = [list_file(x, s, True) for x in lists]
        trainer.valid_dataloader = build_dataloader(cfg, "Eval", trainer.logger)
        metric = trainer.eval()
        report.update(
            acc=float(metric["acc"]),  # case-insensitive, spaces and symbols ignored (alphanumeric)
            acc_exact=float(metric["acc_real"]), acc_lower=float(metric["acc_lower"]),
            norm_edit_dis=float(metric["norm_edit_dis"]), num_samples=int(metric["num_samples"]))
    else:
        report.update(acc=None, acc_exact=None, norm_edit_dis=None,
                      note="no sample of this test set can be read by this recogniser (see skipped)")
    report["checkpoint"] = info
    where = os.path.join(s["output_dir"], folder, *name.split("/"))
    os.makedirs(where, exist_ok=True)
    write_json(report, os.path.join(where, "metrics.json"))
    return report
