"""The STR benchmark protocol as the field reports it: which test sets, one number per set, and the averages.

Presets (``test_benchmarks``) name the LMDBs as OpenOCR distributes them (its ``tools/eval_rec_all_en.py`` reads the
same folders), below ``benchmark_root``:

* ``common6``: IIIT5k (3,000), SVT (647), IC13_857, IC15_1811, SVTP (645), CUTE80 (288) in ``test/``;
* ``union14m``: the Union14M-Benchmark's curve, multi_oriented, artistic, contextless, salient, multi_words and
  general in ``u14m/``.

A ``test_data`` entry is ``name: path``; a path that holds several STR LMDBs is one test set per LMDB
(``name/<sub-folder>``), never one merged number. Each group (a preset, a folder of LMDBs, the single ``test_data``
entries) gets OpenOCR's two averages: arithmetic (each set counts once) and weighted by the number of samples.
Accuracy is OpenOCR's ``acc``: case-insensitive, letters and digits only; test labels are normalised as OpenOCR's
test sets normalise them (:func:`textssr.str.data_list.scored_label`).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence

from textssr.config import ConfigError

# preset → [(test set name, folder below benchmark_root, samples as published)]
BENCHMARKS = {
    "common6": [("IIIT5k", "test/IIIT5k", 3000), ("SVT", "test/SVT", 647), ("IC13_857", "test/IC13_857", 857),
                ("IC15_1811", "test/IC15_1811", 1811), ("SVTP", "test/SVTP", 645), ("CUTE80", "test/CUTE80", 288)],
    "union14m": [("curve", "u14m/curve", 2426), ("multi_oriented", "u14m/multi_oriented", 1369),
                 ("artistic", "u14m/artistic", 900), ("contextless", "u14m/contextless", 779),
                 ("salient", "u14m/salient", 1585), ("multi_words", "u14m/multi_words", 829),
                 ("general", "u14m/general", 400000)],
}
SINGLE = "test_data"  # the group of test_data's single-LMDB entries
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
METRICS = ("acc", "acc_exact", "norm_edit_dis")


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip(".") or "_"


def resolve_test_sets(test_data: dict, benchmarks: Sequence[str], root: str) -> Dict[str, dict]:
    """Name → {path, group, expected} of every test set, in table order (presets first); a ConfigError for a
    missing LMDB, an unknown preset or a name that is no plain folder name (it names ``eval/<name>/``)."""
    from textssr.str.data_list import find_str_lmdbs

    out: Dict[str, dict] = {}
    for preset in benchmarks:
        if preset not in BENCHMARKS:
            raise ConfigError(f"test_benchmarks: unknown preset {preset!r}; choose from {sorted(BENCHMARKS)}")
        for name, folder, expected in BENCHMARKS[preset]:
            path = os.path.join(root, folder)
            if not os.path.isfile(os.path.join(path, "data.mdb")):
                raise ConfigError(f"test_benchmarks {preset}: no STR LMDB at {path} — put OpenOCR's benchmark "
                                  f"LMDBs below benchmark_root={root} (docs/str.md, 'Benchmarks')")
            out[name] = {"path": path, "group": preset, "expected": expected}
    for name, path in test_data.items():
        if not isinstance(name, str) or not _NAME.match(name) or name in ("..", "."):
            raise ConfigError(f"test_data: test set name {name!r} must be a plain name (letters, digits, _ . -): "
                              "it names the folder eval/<name>/")
        if not isinstance(path, str):
            raise ConfigError(f"test_data[{name!r}]={path!r}: must be the path of an STR LMDB (or a folder of them)")
        lmdbs = find_str_lmdbs(path)
        if not lmdbs:
            raise ConfigError(f"test_data[{name!r}]: no STR LMDB (data.mdb) at {path} — write one with "
                              "python -m textssr.str.lmdb_convert")
        if name in out:
            raise ConfigError(f"test_data: {name!r} is also a test set of test_benchmarks; rename it")
        if lmdbs == [path]:
            out[name] = {"path": path, "group": SINGLE, "expected": None}
            continue
        for lmdb in lmdbs:
            rel = os.path.relpath(lmdb, path)
            out[f"{name}/{'/'.join(_safe(p) for p in rel.split(os.sep))}"] = {"path": lmdb, "group": name,
                                                                              "expected": None}
    return out


def averages(reports: Sequence[dict]) -> Optional[dict]:
    """OpenOCR's two averages of a group's test sets (those with a result): arithmetic and sample-weighted."""
    scored = [r for r in reports if r.get("acc") is not None]
    if not scored:
        return None
    total = sum(r["num_samples"] for r in scored)
    return {"sets": len(scored), "num_samples": total,
            "arithmetic_avg": {m: sum(r[m] for r in scored) / len(scored) for m in METRICS},
            "weighted_avg": {m: sum(r[m] * r["num_samples"] for r in scored) / total for m in METRICS}}


def summary(sets: Dict[str, dict], reports: Dict[str, dict]) -> dict:
    """``metrics.json``: every set's report, and per group its sets and averages."""
    groups: Dict[str, List[str]] = {}
    for name, t in sets.items():
        groups.setdefault(t["group"], []).append(name)
    return {"test_sets": reports,
            "groups": {g: dict(test_sets=names, **(averages([reports[n] for n in names]) or {}))
                       for g, names in groups.items()}}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:6.2f}"


def table(result: dict) -> List[str]:
    """The run's table: one row per test set (acc, exact, 1 - NED as OpenOCR's norm_edit_dis, in %), then each
    group's arithmetic and weighted averages."""
    reports, width = result["test_sets"], max([24] + [len(n) + 2 for n in result["test_sets"]])
    lines = [f"{'test set':<{width}}{'samples':>9}{'acc':>8}{'exact':>8}{'1-NED':>8}"]
    for group, g in result["groups"].items():
        for name in g["test_sets"]:
            r = reports[name]
            flag = "" if r.get("expected_samples") in (None, r["num_samples"]) else \
                f"   (published: {r['expected_samples']})"
            lines.append(f"{name:<{width}}{r['num_samples']:>9}{_pct(r['acc']):>8}{_pct(r['acc_exact']):>8}"
                         f"{_pct(r['norm_edit_dis']):>8}{flag}")
        if g.get("sets", 0) > 1:
            for kind in ("arithmetic_avg", "weighted_avg"):
                a = g[kind]
                lines.append(f"{(group + ' ' + kind.replace('_avg', ' avg')):<{width}}{g['num_samples']:>9}"
                             f"{_pct(a['acc']):>8}{_pct(a['acc_exact']):>8}{_pct(a['norm_edit_dis']):>8}")
    return lines
