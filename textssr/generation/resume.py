"""The one resume rule of infer and synthesis.

A run records ``resume_record(cfg, run)``: every settings field whose ``resume`` flag is set, with ``resolved`` —
what the checkpoint folders, the scheduler, the sizes (and the bench, the source's content) resolved to — standing
for the values it resolves. A rerun whose record differs is refused (:func:`check_resume`) instead of mixing
outputs: a new latest checkpoint is another run.
"""
from __future__ import annotations

import json
from typing import Optional

from textssr.config import ConfigError
from textssr.generation.run import Run

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
