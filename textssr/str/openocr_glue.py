"""Drive OpenOCR's own recognition trainer from a TextSSR config: what ``train_str.py`` runs.

What is ours is only glue: locate the installed ``openocr-python`` package and import its trainer the way its
``tools/train_rec.py`` does (its folder on ``sys.path``); translate our mmengine config into an OpenOCR config (its
YAML, e.g. ``configs/rec/svtrv2/svtrv2_rctc.yml``, with data, output and schedule filled in); the data lists
(:mod:`textssr.str.data_list`) read by two thin subclasses of OpenOCR's datasets (:mod:`openocr_datasets`); resume;
and the reports (``metrics.json`` per test set). Training, model, transforms, sampler, loss, checkpoints and the
metric are OpenOCR's.

Wrappers, none editing OpenOCR's files:
  * OpenOCR's ``openrec.metrics`` imports its formula-recognition metric (CMER) eagerly, which needs ``datasets``,
    ``evaluate``, ``rouge_score`` and ``Levenshtein`` — large packages a text recogniser never uses. Where they are
    missing, a stand-in module is registered for that one metric; asking for ``CMERMetric`` then fails with a line
    saying what to install.
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
import time
import types
from typing import Dict, List, Optional, Sequence

from textssr.config.checks import as_float, check_output_dir
from textssr.config import ConfigError
from textssr.str.settings import StrSettings
from textssr.utils.jsonio import read_json, write_json
from textssr.str import data_list as dl

INSTALL_HINT = "install it with `make install-str` (or the two pip commands in docs/str.md)"
CMER_DEPENDENCIES = ("datasets", "evaluate", "rouge_score", "Levenshtein")
_DECODERS = ("DecodeImage", "DecodeImagePIL")
_AUGMENT_OPS = ("SVTRAug", "ABINetAug", "PARSeqAug", "PARSeqAugPIL")
RUN_SETTINGS = "train_str_settings.json"
# keys a resume may change
FREE_KEYS = ("test_data", "num_workers", "torch_threads", "print_batch_step", "eval_batch_size")
LATEST = "latest.pth"


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
    """Make OpenOCR's ``tools`` and ``openrec`` importable as its own scripts do; with ``register``, add our two
    datasets to its registry and make its checkpoint writes atomic. Returns OpenOCR's folder."""
    root = openocr_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    name = "openrec.metrics.rec_metric_cmer"
    if name not in sys.modules and any(importlib.util.find_spec(m) is None for m in CMER_DEPENDENCIES):
        sys.modules[name] = _cmer_stand_in()
    if register:
        import torch
        import tools.data
        import tools.utils.ckpt as ckpt
        for dataset in ("ListedRatioDataSet", "ListedRatioDataSetTest"):
            tools.data.DATASET_MODULES[dataset] = "textssr.str.openocr_datasets"
        tools.data.SAMPLER_MODULES["ListedRatioSampler"] = "textssr.str.openocr_datasets"
        if not isinstance(ckpt.torch, _AtomicTorch):
            ckpt.torch = _AtomicTorch(torch)
    return root


def openocr_file(path: str, root: str, key: str) -> str:
    """``path`` as given if it exists, else relative to the OpenOCR package; a ConfigError naming ``key``."""
    for candidate in (path, os.path.join(root, path)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ConfigError(f"{key}={path!r}: no such file here or in the OpenOCR package ({root})")


# ---------------------------------------------------------------------------------------------- the config


def _path_and_ratio(text: str) -> dict:
    """``"PATH"`` or ``"PATH:RATIO"`` (the command line's way to give a ratio: ``train_data=[a:0.5,b]``)."""
    path, _, ratio = text.rpartition(":")
    try:
        return {"path": path, "ratio": float(ratio)} if path else {"path": text}
    except ValueError:
        return {"path": text}


def _sources(value, key: str, with_ratio: bool) -> List[dict]:
    """Normalise ``train_data`` (list of paths or dict(path, ratio)) / ``test_data`` (name → path) entries."""
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


def check_config(settings: StrSettings) -> dict:
    """What the settings (each value checked already: textssr.str.settings) name, resolved and checked — the data
    sources, OpenOCR's config and character dictionary, the output folder (ConfigError, one line) — as the plain
    dict the rest of this module reads."""
    root = openocr_root()
    s = copy.deepcopy(settings.to_dict())
    s["openocr_config"] = openocr_file(s["openocr_config"], root, "openocr_config")
    s["character_dict"] = openocr_file(s["character_dict"], root, "character_dict")
    check_output_dir(s["output_dir"])
    s["train_sources"] = _sources(s["train_data"], "train_data", with_ratio=True)
    s["test_sources"] = {name: _sources([path], f"test_data[{name!r}]", with_ratio=False)
                         for name, path in (s["test_data"] or {}).items()}
    return s


def _merge(base: dict, override: dict) -> dict:
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _plain(obj):
    """Plain dicts and lists (OpenOCR's loader makes AttrDicts): the config is saved inside every checkpoint,
    which resume reads with ``torch.load(weights_only=True)``."""
    return json.loads(json.dumps(obj))


def _label_ops(transforms: Sequence[dict]) -> List[dict]:
    return [op for op in transforms if next(iter(op)) not in _DECODERS + _AUGMENT_OPS]


def translate(s: dict, train_lists: Sequence[str], checkpoint: Optional[str]) -> dict:
    """The OpenOCR config of this run: ``s['openocr_config']`` with our keys filled in, then ``openocr_options``."""
    from tools.engine.config import Config

    oc = _plain(Config(s["openocr_config"]).cfg)
    g = oc["Global"]
    g.update(device=s["device"], epoch_num=s["epoch_num"], output_dir=os.path.abspath(s["output_dir"]),
             character_dict_path=s["character_dict"], max_text_length=s["max_text_length"],
             use_space_char=s["use_space_char"], use_amp=s["use_amp"], seed=s["seed"],
             print_batch_step=s["print_batch_step"], use_tensorboard=False, checkpoints=checkpoint,
             cal_metric_during_train=False,  # with RecMetric(with_ratio) it would log zeros; eval is after training
             pretrained_model=None, save_epoch_step=[s["epoch_num"] + 1, 1],  # only latest.pth (OpenOCR's resume)
             eval_batch_step=10 ** 12, save_iter_step=[10 ** 12, 10 ** 12], save_res_path=None)
    oc["Optimizer"]["lr"] = s["learning_rate"]
    train = oc["Train"]
    label_ops = _label_ops(train["dataset"]["transforms"])
    decode = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}}]
    train["dataset"] = {
        "name": "ListedRatioDataSet", "ds_width": True, "padding": train["dataset"].get("padding", False),
        "data_dir_list": [x["path"] for x in s["train_sources"]],
        "ratio_list": [x["ratio"] for x in s["train_sources"]],
        "data_lists": list(train_lists), "samples_per_epoch": s["samples_per_epoch"],
        "transforms": decode + ([{s["augment"]: None}] if s["augment"] else []) + label_ops}
    train["sampler"].update(name="ListedRatioSampler", first_bs=s["batch_size"])
    train["loader"].update(batch_size_per_card=s["batch_size"], num_workers=s["num_workers"])
    ev = oc["Eval"]
    eval_ops = copy.deepcopy(_label_ops(ev["dataset"]["transforms"]))
    keep = eval_ops[-1].get("KeepKeys", {}).get("keep_keys", [])
    if "real_ratio" not in keep:  # RecMetric(with_ratio) reads each sample's ratio, as OpenOCR's eval_rec_all_en
        keep.append("real_ratio")
    ev["dataset"] = {"name": "ListedRatioDataSetTest", "ds_width": True, "padding": False, "data_dir_list": [],
                     "data_lists": [], "transforms": decode + eval_ops}
    ev["sampler"].update(name="ListedRatioSampler", first_bs=s["eval_batch_size"])
    ev["loader"].update(batch_size_per_card=s["eval_batch_size"], num_workers=min(s["num_workers"], 2))
    oc["Metric"].update(with_ratio=True, max_len=s["max_text_length"], max_ratio=12)
    oc = _merge(oc, s.get("openocr_options") or {})
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


# -------------------------------------------------------------------------------------------- data lists


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def build_lists(s: dict, sources: Sequence[dict], what: str, log=print) -> List[dl.DataList]:
    """The data list of each source (cached under ``output_dir/data_lists``). Rank 0 scans; other ranks of a
    distributed launch wait for its lists."""
    charset = dl.read_charset(s["character_dict"], s["use_space_char"])
    cache = os.path.join(s["output_dir"], "data_lists")
    out = []
    for src in sources:
        if rank() == 0:
            def progress(done, total, path=src["path"]):
                if total > 5000:
                    log(f"checking {what} {path}: {done}/{total}")
            out.append(dl.data_list(src["path"], charset, s["max_text_length"], s["use_space_char"], cache, progress))
        else:
            while True:
                found = dl.cached_list(src["path"], charset, s["max_text_length"], s["use_space_char"], cache)
                if found is not None:
                    out.append(found)
                    break
                time.sleep(2)
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
        parts.append("; ".join(f"{n} LMDB(s) {r}" for r, n in notes.items()))
    return "; ".join(parts)


def list_file(lst: dl.DataList, s: dict) -> str:
    return dl.list_path(lst.lmdb_path, os.path.join(s["output_dir"], "data_lists"))


# ------------------------------------------------------------------------------------------------ the run


def settings_of(s: dict) -> dict:
    return _plain({k: v for k, v in s.items() if k not in FREE_KEYS + ("test_sources",)})


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
    """Which model was evaluated: OpenOCR's checkpoint file, its epoch and optimizer step."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {"path": path, "epoch": int(state["epoch"]), "global_step": int(state["global_step"])}


def evaluate(trainer, s: dict, name: str, lists: Sequence[dl.DataList], log=print) -> dict:
    """OpenOCR's ``Trainer.eval`` (its RecMetric, ``with_ratio``) on one test set; its ``metrics.json``."""
    from tools.data import build_dataloader

    report = {"test_set": name, "lmdbs": [x.lmdb_path for x in lists], "skipped": dl.merge_skips(lists),
              "notes": {k: v for x in lists for k, v in x.notes.items()}, "num_samples": sum(len(x) for x in lists)}
    if report["num_samples"]:
        cfg = trainer.cfg
        cfg["Eval"]["dataset"]["data_dir_list"] = [x.lmdb_path for x in lists]
        cfg["Eval"]["dataset"]["data_lists"] = [list_file(x, s) for x in lists]
        trainer.valid_dataloader = build_dataloader(cfg, "Eval", trainer.logger)
        metric = trainer.eval()
        report.update(
            acc=float(metric["acc"]),  # case-insensitive, spaces and symbols ignored (alphanumeric)
            acc_exact=float(metric["acc_real"]), acc_lower=float(metric["acc_lower"]),
            norm_edit_dis=float(metric["norm_edit_dis"]), num_samples=int(metric["num_samples"]))
    else:
        report.update(acc=None, acc_exact=None, norm_edit_dis=None,
                      note="no sample of this test set can be read by this recogniser (see skipped)")
    report["checkpoint"] = trainer.status_info
    folder = os.path.join(s["output_dir"], "eval", name)
    os.makedirs(folder, exist_ok=True)
    write_json(report, os.path.join(folder, "metrics.json"))
    return report


def train_and_evaluate(s: dict, log=print) -> Dict[str, dict]:
    """The whole run (see the module doc); returns {test set: metrics}."""
    import_openocr()
    if s["torch_threads"]:
        import torch
        torch.set_num_threads(s["torch_threads"])
    os.makedirs(s["output_dir"], exist_ok=True)
    checkpoint = resume_checkpoint(s)
    train_lists = build_lists(s, s["train_sources"], "training set", log)
    for lst in train_lists:
        log(f"train {lst.lmdb_path}: {describe([lst])}")
    if not sum(len(x) for x in train_lists):
        raise ConfigError(f"nothing to train on: no sample of train_data passes the checks ({describe(train_lists)}); "
                          "see docs/str.md, 'Bad input'")
    test_lists = {name: build_lists(s, srcs, f"test set {name}", log) for name, srcs in s["test_sources"].items()}
    for name, lists in test_lists.items():
        log(f"test {name}: {describe(lists)}")
    if rank() == 0:
        write_json(settings_of(s), os.path.join(s["output_dir"], RUN_SETTINGS))
        write_json({"train": [x.report() for x in train_lists],
                    "test": {n: [x.report() for x in lists] for n, lists in test_lists.items()}},
                   os.path.join(s["output_dir"], "data_report.json"))
    oc = translate(s, [list_file(x, s) for x in train_lists], checkpoint)
    if checkpoint:
        log(f"resuming from {checkpoint}")

    from tools.engine.config import Config
    from tools.engine.trainer import Trainer, is_main_process

    config = Config.__new__(Config)  # OpenOCR's Config around our translated dict (Trainer reads .cfg, print_cfg)
    config.cfg = oc
    trainer = Trainer(config, mode="train", task="rec")
    # OpenOCR 0.1.5 zeroes the gradients only on its use_amp path: without amp they add up over the whole run and
    # training diverges. Zeroing them after every optimizer step leaves the amp path (and accumulation) as it was.
    trainer.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: optimizer.zero_grad(set_to_none=True))
    trainer.train()
    trainer.status_info = checkpoint_info(os.path.join(s["output_dir"], LATEST))
    if not is_main_process():
        return {}
    results = {}
    for name, lists in test_lists.items():
        results[name] = evaluate(trainer, s, name, lists, log)
        r = results[name]
        log(f"{name}: acc {r['acc']} (case-insensitive alphanumeric), exact {r['acc_exact']}, "
            f"n={r['num_samples']}" + (f", skipped {r['skipped']}" if r["skipped"] else ""))
    write_json(results, os.path.join(s["output_dir"], "metrics.json"))
    return results
