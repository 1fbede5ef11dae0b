"""AnyWord datasets (method.md §2–3): one sample per (image, annotation), built as method.md §3 says.

:class:`AnyWordDataset` reads AnyWord JSON + image files, :class:`textssr.data.lmdb_store.AnyWordLmdbDataset`
AnyWord-lmdb. Both are an :class:`AnyWordBase`: index-time filtering of cheap bad annotations, per-sample random
generators, skip accounting, and ``__getitem__``'s substitution of bad instances.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from textssr.data.errors import DataError, check_choice, data_errors
from textssr.utils.jsonio import read_json
from textssr.data import geometry, skips
from textssr.data.fonts import DEFAULT_FONT, missing_chars, resolve_font
from textssr.data.image_io import ImageReader
from textssr.data.sample import build_crop, region_window
from textssr.data.seeding import item_rng
from textssr.data.skips import SkipSample

PLACEMENTS = ("random", "center")
MAX_SUBSTITUTIONS = 64  # __getitem__ gives up after this many bad instances in a row
ROOT_PROBES = 8  # image names checked when choosing among data_root candidates
OTHER_LANGUAGE = skips.OTHER_LANGUAGE  # filtered by the `language` option: not a skip, counted in ``filtered``


def screen_entry(entry) -> Tuple[Optional[str], str, object, list]:
    """(reason, detail, img_name, annotations) of one ``data_list`` entry; reason is None for a usable one, else a
    skip reason (IMAGE_NAME_INVALID is counted once per annotation, the others once per entry)."""
    if not isinstance(entry, dict):
        return skips.ENTRY_MALFORMED, "not a JSON object", None, []
    annotations = entry.get("annotations") or []
    if not isinstance(annotations, list):
        return skips.ANNOTATIONS_MALFORMED, f"annotations is a {type(annotations).__name__}, not a list", None, []
    name = entry.get("img_name")
    if not isinstance(name, str) or not name:
        return skips.IMAGE_NAME_INVALID, f"img_name is {name!r}", name, annotations
    return None, "", name, annotations


def outside_root(img_name: str) -> bool:
    """Whether ``img_name`` names a file outside its data_root: an absolute path, or one climbing out with ``../``
    (decided on the name; symbolic links inside data_root are followed, their owner made them)."""
    return os.path.isabs(img_name) or os.path.normpath(img_name).split(os.sep)[0] == os.pardir


def screen_annotation(ann, language: Optional[str] = None):
    """Font-independent checks of one AnyWord annotation: (reason, text, language, polygon) where reason is
    None to keep it, OTHER_LANGUAGE when the ``language`` filter drops it, else a skip reason."""
    if not isinstance(ann, dict):
        return skips.ANNOTATION_MALFORMED, "", None, None
    lang = ann.get("language")
    if lang is not None and not isinstance(lang, str):
        return skips.LANGUAGE_INVALID, "", None, None
    if language is not None and lang is not None and lang != language:
        return OTHER_LANGUAGE, "", lang, None
    text = ann.get("text")
    problem = skips.EMPTY_TEXT if text is None else skips.text_problem(text)
    if problem is not None:
        return problem, text if isinstance(text, str) else "", lang, None
    polygon = geometry.parse_polygon(ann.get("polygon"))
    if polygon is None:
        return skips.POLYGON_DEGENERATE, text, lang, None
    return None, text, lang, polygon


class AnyWordBase(Dataset):
    """What both AnyWord datasets share. A subclass fills the index and implements ``__len__``, :meth:`_record`,
    :meth:`polygon` and :meth:`_image_bytes` (and may store content extents). Pixels come through ``self.images``,
    an :class:`~textssr.data.image_io.ImageReader` (decoded-image cache, window-only JPEG decoding;
    ``ds.images.window_decode = False`` decodes whole images).
    """

    def __init__(self, seed: int = 3407, resolution: int = 256, ttf_size: int = 64, max_len: int = 25,
                 language: Optional[str] = None, font_path: str = DEFAULT_FONT, vae_mode: bool = False,
                 strict: bool = False, region_placement: str = "random", allow_images_outside_root: bool = False):
        for key, value in (("resolution", resolution), ("ttf_size", ttf_size), ("max_len", max_len)):
            if int(value) < 1:
                raise DataError(f"{key}={value}; must be >= 1")
        self.region_placement = check_choice(region_placement, "region_placement", PLACEMENTS)
        self.seed, self.resolution, self.ttf_size, self.max_len = int(seed), int(resolution), int(ttf_size), int(max_len)
        if language is not None and not isinstance(language, str):
            raise DataError(f"language={language!r}: must be a language name such as 'Latin' or 'Chinese', or None")
        if not isinstance(allow_images_outside_root, bool):
            raise DataError(f"allow_images_outside_root={allow_images_outside_root!r}: must be True or False")
        self.language, self.vae_mode, self.strict = language, bool(vae_mode), bool(strict)
        self.allow_images_outside_root = allow_images_outside_root
        self.font_path = None if self.vae_mode else resolve_font(font_path)
        self.epoch = 0
        self.skip_counts: Counter = Counter()  # each bad instance once: index-time filtering + found while building
        self.filtered: Counter = Counter()  # good instances a filter the user asked for removed (skips.FILTER_HELP)
        self.bad: Dict[int, str] = {}  # index → reason of instances found bad while building (never rebuilt)
        self.images = ImageReader(self._image_bytes, self._image_key, self.__len__, self._stored_extent,
                                  self._learn_extent)

    # ------------------------------------------------------------------ subclass interface
    def _record(self, index: int) -> Tuple[object, str, int, str, Optional[str]]:
        """(image key, image name, annotation index, text, language) of sample ``index``."""
        raise NotImplementedError

    def polygon(self, index: int) -> np.ndarray:
        """The text polygon of sample ``index``, (N, 2) float image pixels (SkipSample when unreadable)."""
        raise NotImplementedError

    def _image_bytes(self, key) -> Optional[bytes]:
        """Encoded bytes of image ``key``, None when missing."""
        raise NotImplementedError

    def _image_key(self, index: int):
        return self._record(index)[0]

    def _stored_extent(self, key) -> Optional[geometry.Box]:
        """The content extent of image ``key`` when known without decoding it, else None."""
        return None

    def _learn_extent(self, key, extent: geometry.Box) -> None:
        """Remember the extent computed from a decode (for :meth:`_stored_extent`); a no-op by default."""

    # ------------------------------------------------------------------ index-time checks
    def _check_annotation(self, ann, img_name: str, ann_index: int) -> Optional[Tuple[str, Optional[str], np.ndarray]]:
        """(text, language, polygon) of an annotation to keep, None for one filtered out (counted unless it is
        only another language). Strict mode raises at the first bad one."""
        reason, text, language, polygon = screen_annotation(ann, self.language)
        if reason == OTHER_LANGUAGE:
            self.filtered[OTHER_LANGUAGE] += 1
            return None
        if reason is not None:
            return self._reject(reason, img_name, ann_index, skips.REASON_HELP[reason])
        if not self.vae_mode:
            lacking = missing_chars(text, self.font_path)
            if lacking:
                return self._reject(skips.MISSING_GLYPH, img_name, ann_index,
                                    f"{text!r}: {''.join(lacking)!r} not in {os.path.basename(self.font_path)}")
            if len(text) > self.max_len:
                self.skip_counts[skips.TEXT_TRUNCATED] += 1
        return text, language, polygon

    def _reject(self, reason: str, img_name: str, ann_index: int, detail: str) -> None:
        if self.strict:
            raise SkipSample(reason, f"{img_name} annotation {ann_index}: {detail}")
        self.skip_counts[reason] += 1

    # ------------------------------------------------------------------ public API
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose per-sample random streams ``__getitem__`` uses."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch: a function of (seed, epoch, index) only,
        so streams differ between samples (hence between DataLoader workers and ranks) and repeat under
        the same seed whatever ``num_workers`` is."""
        return item_rng(self.seed, self.epoch, index)

    def instance_info(self, index: int) -> dict:
        _, img_name, ann_index, text, language = self._record(index)
        return dict(img_name=img_name, ann_index=ann_index, text=text, language=language)

    def report(self) -> str:
        """One line per reason met so far (index-time filtering and substitutions in this process)."""
        return skips.report(self.skip_counts)

    def build(self, index: int, rng: Optional[np.random.Generator] = None, text: Optional[str] = None) -> dict:
        """Sample ``index`` exactly as method.md §3 (``text`` replaces the annotation's text; ``rng`` draws the
        crop window, default :meth:`sample_rng`). Raises SkipSample for a bad instance; does not count it
        (whoever catches it does, as ``__getitem__`` does)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        key, img_name, ann_index, own_text, _ = self._record(index)
        where = f"{img_name} annotation {ann_index} (index {index})"
        text = own_text if text is None else text
        if not self.vae_mode:
            problem = skips.text_problem(text)
            if problem is not None:
                raise SkipSample(problem, f"{where}: text {text!r}")
            lacking = missing_chars(text, self.font_path)
            if lacking:
                raise SkipSample(skips.MISSING_GLYPH, f"{where}: {''.join(lacking)!r} not in the font")
        if self.region_placement == "center":
            rng = None
        elif rng is None:
            rng = self.sample_rng(index)
        polygon = self.polygon(index)
        crop, window = self.images.window(index, key, polygon, rng, where, region_window)
        return build_crop(crop, window, polygon, text, resolution=self.resolution, ttf_size=self.ttf_size,
                          max_len=self.max_len, font_path=self.font_path, vae_mode=self.vae_mode, where=where,
                          timings=self.images.timings)

    def mark_bad(self, found: Dict[int, str]) -> None:
        """Record instances found bad elsewhere (DataLoader workers, other ranks, a resumed run): counted once
        here, and never built again."""
        for index, reason in found.items():
            if int(index) not in self.bad:
                self.bad[int(index)] = reason
                self.skip_counts[reason] += 1

    def __getitem__(self, index: int) -> dict:
        """:meth:`build` with the sample's own generator; a bad instance is replaced by the next good one. Those
        found bad for the first time here are counted once (``skip_counts``, ``bad``) and listed in
        ``sample["skipped"]`` as (index, reason); known-bad ones are passed over unbuilt. Strict mode raises."""
        met: List[Tuple[int, str]] = []
        for step in range(min(MAX_SUBSTITUTIONS, len(self))):
            current = (index + step) % len(self)
            if current in self.bad:
                continue
            try:
                sample = self.build(current)
            except SkipSample as exc:
                if self.strict:
                    raise
                self.mark_bad({current: exc.reason})
                met.append((current, exc.reason))
                continue
            if met:
                sample["skipped"] = met
            sample["index"] = current  # the instance actually built (a substitute's own index)
            return sample
        raise RuntimeError(f"{MAX_SUBSTITUTIONS} bad instances in a row from index {index} "
                           f"({Counter(self.bad[i] for i in self.bad)}); the data is broken — check it with strict=True")

# ---------------------------------------------------------------------------------------------- JSON


def root_candidates(data_root: str, json_path: str) -> List[str]:
    """Where a relative ``data_root`` may point: the current directory first (the original's behaviour),
    then the JSON's folder and each of its ancestors."""
    if os.path.isabs(data_root):
        return [data_root]
    out = [os.path.abspath(data_root)]
    folder = os.path.dirname(os.path.abspath(json_path))
    while True:
        candidate = os.path.normpath(os.path.join(folder, data_root))
        if candidate not in out:
            out.append(candidate)
        parent = os.path.dirname(folder)
        if parent == folder:
            return out
        folder = parent


def resolve_data_root(data_root: str, json_path: str, img_names: Sequence[str]) -> str:
    """The first candidate folder holding one of the first images; DataError naming every place tried."""
    probes = [n for n in img_names if isinstance(n, str) and n and not outside_root(n)][:ROOT_PROBES]
    tried = []
    for candidate in root_candidates(data_root or ".", json_path):
        if os.path.isdir(candidate) and (not probes or any(os.path.isfile(os.path.join(candidate, n)) for n in probes)):
            return candidate
        tried.append(candidate if os.path.isdir(candidate) else f"{candidate} (no such folder)")
    raise DataError(f"{json_path}: data_root {data_root!r} holds none of its images ({', '.join(probes[:3])}, …); "
                      f"tried {'; '.join(tried)} — run from the folder data_root is relative to, or fix data_root")


def load_anyword_json(json_path: str) -> dict:
    if not os.path.isfile(json_path):
        raise DataError(f"AnyWord JSON not found: {json_path}")
    with data_errors(ValueError, prefix=f"{json_path} is not valid JSON: "):  # UnicodeDecodeError is one
        content = read_json(json_path)
    if not isinstance(content, dict) or not isinstance(content.get("data_list"), list):
        raise DataError(f"{json_path} is not AnyWord JSON: it needs a `data_list` list (and a `data_root`)")
    return content


class AnyWordDataset(AnyWordBase):
    """AnyWord JSON (one file or a list of them) + image files; ``options`` are :class:`AnyWordBase`'s.
    ``json_path=()`` gives an empty dataset that :meth:`add_entries` fills (entries known in memory, e.g. a
    folder of photos whose lines are found while the run goes on)."""

    def __init__(self, json_path: Union[str, Sequence[str]], **options):
        super().__init__(**options)
        paths = [json_path] if isinstance(json_path, (str, os.PathLike)) else list(json_path)
        if not paths and json_path != ():
            raise DataError("json_path is empty: give one AnyWord JSON or a list of them")
        self.image_paths: List[str] = []
        self.image_names: List[str] = []
        self.samples: List[Tuple[int, int, str, Optional[str], np.ndarray]] = []
        self.numbers: List[int] = []  # per sample: its instance number (annotations counted in JSON order)
        self._next_number = 0
        self._extents = np.full((0, 4), -1, dtype=np.int32)  # learned on first decode
        for path in paths:
            self._add_json(str(path))

    def _add_json(self, json_path: str) -> None:
        content = load_anyword_json(json_path)
        entries = content["data_list"]
        root = resolve_data_root(str(content.get("data_root") or "."), json_path,
                                 [e.get("img_name") for e in entries if isinstance(e, dict)])
        self.add_entries(entries, root, json_path)

    def add_entries(self, entries: Sequence[dict], root: str, where: str) -> None:
        """Index AnyWord ``data_list`` entries whose images are under ``root`` (``where``: what to name in
        messages). Instance numbers count every annotation of every entry whose ``annotations`` is a list, bad
        ones included, so they never change when an instance is skipped."""
        for position, entry in enumerate(entries):
            reason, detail, name, annotations = screen_entry(entry)
            first = self._next_number
            self._next_number += len(annotations)
            if reason is None and not self.allow_images_outside_root and outside_root(name):
                reason, detail = skips.IMAGE_OUTSIDE_ROOT, f"img_name {name!r} is outside data_root {root}"
            if reason is not None:  # a bad img_name: each of its annotations counted
                per_annotation = reason in (skips.IMAGE_NAME_INVALID, skips.IMAGE_OUTSIDE_ROOT)
                for ann_index in range(len(annotations)) if per_annotation else (-1,):
                    self._reject(reason, f"{where} data_list[{position}]", ann_index, detail)
                continue
            image_key = len(self.image_paths)
            self.image_paths.append(os.path.join(root, name))
            self.image_names.append(name)
            for ann_index, ann in enumerate(annotations):
                kept = self._check_annotation(ann, name, ann_index)
                if kept is not None:
                    self.samples.append((image_key, ann_index) + kept)
                    self.numbers.append(first + ann_index)
        if len(self.image_paths) > len(self._extents):  # grown by doubling: entries may come one photo at a time
            extents = np.full((max(len(self.image_paths), 2 * len(self._extents)), 4), -1, dtype=np.int32)
            extents[:len(self._extents)] = self._extents
            self._extents = extents

    def __len__(self) -> int:
        return len(self.samples)

    def _record(self, index):
        key, ann_index, text, language, _ = self.samples[index]
        return key, self.image_names[key], ann_index, text, language

    def polygon(self, index):
        return self.samples[index][4]

    def _stored_extent(self, key) -> Optional[geometry.Box]:
        extent = self._extents[key]
        return None if extent[0] < 0 else tuple(int(v) for v in extent)

    def _learn_extent(self, key, extent: geometry.Box) -> None:
        self._extents[key] = extent

    def _image_bytes(self, key) -> Optional[bytes]:
        try:
            with open(self.image_paths[key], "rb") as f:
                return f.read()
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return None


# ---------------------------------------------------------------------------------------------- collate


def collate(batch: Iterable[dict]) -> Dict[str, object]:
    """Stack samples: tensors on a new first axis, ``text`` as a list, ``index`` (set by ``__getitem__``) as an
    int64 tensor, and the instances found bad while the batch was built as ``skipped_instances`` {index: reason}
    and ``skipped`` {reason: count} (both always present, maybe empty)."""
    batch = list(batch)
    if not batch:
        raise ValueError("collate got an empty batch")
    out: Dict[str, object] = {}
    for key, value in batch[0].items():
        if torch.is_tensor(value):
            out[key] = torch.stack([s[key] for s in batch])
        elif key == "text":
            out[key] = [s[key] for s in batch]
        elif key == "index":
            out[key] = torch.tensor([s[key] for s in batch], dtype=torch.int64)
    found: Dict[int, str] = {}
    for s in batch:
        found.update((int(i), reason) for i, reason in s.get("skipped", ()))
    out["skipped_instances"] = found
    out["skipped"] = dict(Counter(found.values()))
    return out
