"""The embedded tiny corpus: a deterministic AnyWord corpus drawn from nothing but shipped word lists and
fonts from pip packages — no download, no real photograph. It feeds the demo (``make demo``) and the tests.

    python -m textssr.data.tiny_data [--out data/tiny] [--num-images 600] [--bench-images 40] [--seed 3407]
                                [--resolution 256 384]

Each image is a procedural scene-like background (gradients, smooth noise, blocks, stripes, shapes, blur)
with one to four words on it — English words of 3–10 letters and Chinese nouns of 3–4 characters, in ten
fonts, colours of WCAG contrast ≥ 3 against what lies beneath, sizes, rotations up to ±15°, now and then on
a sign-like plate — and an exact polygon per word: the rotated box of the rendered ink, grown by
``POLYGON_MARGIN`` px. Text areas never overlap. Same arguments → byte-identical files.

Written under ``--out``:

    images/, train.json              the training images (AnyWord JSON; data_root "images", relative to the JSON)
    step2.json                       a smaller, cleaner subset of train.json (same images; see ``is_clean``)
    AnyWord-lmdb/step1_lmdb/         train.json as AnyWord-lmdb: CDM step 1's broad set (method.md §5)
    AnyWord-lmdb/step2_lmdb/         step2.json as AnyWord-lmdb: CDM step 2's cleaner subset
    bench/images/, bench/test.json   the tiny bench: its words and its images never occur in training
    manifest.json                    arguments, counts and fonts; written last, so it marks a complete corpus

Re-running with the same arguments on a complete corpus does nothing (``make demo`` resumes); a corpus
made with other arguments is an error, never overwritten.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from textssr.data.errors import DataError
from textssr.utils.errors import exit_on_input_error
from textssr.data.build_lmdb import build_lmdb
from textssr.data.fonts import font_charset

DEFAULT_OUT = "data/tiny"
DEFAULT_NUM_IMAGES = 600
DEFAULT_BENCH_IMAGES = 40
DEFAULT_SEED = 3407
DEFAULT_RESOLUTION = (256, 384)  # side lengths of the scene images, drawn per image and axis
GENERATOR_VERSION = 1  # bump whenever the same arguments would give different files

LATIN, CHINESE = "Latin", "Chinese"  # AnyWord's language names
WORD_LISTS = {LATIN: "words_latin.txt", CHINESE: "words_cjk.txt"}  # in textssr/assets/
CHINESE_WORD_PROBABILITY = 0.15
BENCH_WORD_FRACTION = 0.1  # of each word list, held out for the bench
WORDS_PER_IMAGE = ((1, 2, 3, 4), (0.35, 0.35, 0.2, 0.1))  # (counts, probabilities)
CASE_STYLES = ((str.lower, str.title, str.upper), (0.4, 0.35, 0.25))  # Latin words only

FONT_SIZE_FRACTION = (0.09, 0.2)  # font size in px / the image's shorter side
MIN_FONT_SIZE = 18
ANGLE_STD, MAX_ANGLE = 6.0, 15.0  # degrees, counter-clockwise; normal, clipped
POLYGON_MARGIN = 1.0  # px around the ink box, so the polygon covers the bilinear fringe of the ink too
EDGE_MARGIN = 2  # px between a footprint and the image border
WORD_GAP = 4  # px between two footprints
PLATE_PAD = (0.15, 0.45)  # plate padding around the ink box, × the ink height
PLATE_PROBABILITY = 0.3  # plates are also forced where the background under a word is busy
BUSY_STD = 0.12  # std of the background's luminance (0–1) under a word above which it gets a plate
MIN_CONTRAST = 3.0  # WCAG contrast ratio of text colour vs mean background under the ink
COLOUR_TRIES = 30
PLACEMENT_TRIES = 40
CAMERA_BLUR_PROBABILITY, CAMERA_BLUR_SIGMA = 0.5, (0.3, 0.8)  # px, on the finished image
CAMERA_NOISE_MAX = 3 / 255  # std of the Gaussian grain, drawn per image in [0, this]
JPEG_QUALITY = 95

# Step 2's "smaller, cleaner subset" (method.md §5): large, nearly level, high-contrast instances.
STEP2_MIN_INK_HEIGHT = 24  # px
STEP2_MAX_ANGLE = 5.0  # degrees
STEP2_MIN_CONTRAST = 4.5

OWNED_ENTRIES = ("images", "train.json", "step2.json", "AnyWord-lmdb", "bench", "manifest.json")


# --------------------------------------------------------------------------------------------- fonts

@dataclass(frozen=True)
class FontSource:
    """A font file shipped inside a pip package: ``package`` (pip name), ``module`` (import name), ``file``."""
    package: str
    module: str
    file: str
    cjk: bool  # covers the Chinese word list (all fonts cover a–z, A–Z)


FONT_SOURCES = (
    FontSource("font-roboto", "font_roboto", "files/Roboto-Regular.ttf", False),
    FontSource("font-roboto", "font_roboto", "files/Roboto-Bold.ttf", False),
    FontSource("font-source-sans-pro", "font_source_sans_pro", "files/SourceSansPro-Regular.ttf", False),
    FontSource("font-source-sans-pro", "font_source_sans_pro", "files/SourceSansPro-Bold.ttf", False),
    FontSource("font-source-serif-pro", "font_source_serif_pro", "files/SourceSerifPro-Semibold.ttf", False),
    FontSource("font-lato", "font_lato", "files/Lato-BoldItalic.ttf", False),
    FontSource("font-fjallaone", "font_fjallaone", "files/FjallaOne-Regular.ttf", False),
    FontSource("font-caladea", "font_caladea", "files/Caladea-Bold.ttf", False),
    FontSource("cvttf-notosanscjk-bold", "cvttf_NotoSansCJK_Bold", "NotoSansCJKtc-Bold.otf", True),
    FontSource("cvttf-notosanscjk-regular", "cvttf_NotoSansCJK_Regular", "NotoSansCJKtc-Regular.otf", True),
)


class FontMissingError(DataError):
    """A font package of ``FONT_SOURCES`` is not installed (or lacks a character): the message names the fix."""


def font_path(source: FontSource) -> Path:
    """Locate ``source``'s file in its installed package; raise FontMissingError naming the package."""
    if importlib.util.find_spec(source.module) is None:
        raise FontMissingError(f"tiny corpus font {source.file} comes from the pip package {source.package}, "
                               f"which is not installed: `pip install {source.package}` (requirements.txt lists it)")
    path = Path(str(importlib.resources.files(source.module).joinpath(source.file)))
    if not path.is_file():
        raise FontMissingError(f"pip package {source.package} is installed but lacks {source.file}: "
                               f"`pip install --force-reinstall {source.package}`")
    return path


class FontBank:
    """The corpus fonts: ``paths`` and ``names`` index them; ``cjk`` lists the CJK-capable ones."""

    def __init__(self, sources: Sequence[FontSource] = FONT_SOURCES):
        self.paths = [font_path(source) for source in sources]
        self.names = [path.name for path in self.paths]
        self.cjk = [i for i, source in enumerate(sources) if source.cjk]

    def get(self, index: int, size: int) -> ImageFont.FreeTypeFont:
        # Opened anew each time (a fraction of a millisecond): Pillow keeps a whole copy of the file in every
        # font object, and a cache over sizes would hold hundreds of MB of the CJK fonts.
        return ImageFont.truetype(str(self.paths[index]), size)

    def check_coverage(self, words: Dict[str, Sequence[str]]) -> None:
        """Raise if a font lacks a character it may be asked to draw (it would draw tofu, not text)."""
        latin = {c for word in words[LATIN] for c in word + word.upper()}
        chinese = {c for word in words[CHINESE] for c in word}
        for i, path in enumerate(self.paths):
            needed = latin | (chinese if i in self.cjk else set())
            missing = sorted(c for c in needed if ord(c) not in font_charset(str(path)))
            if missing:
                raise FontMissingError(f"font {path} lacks the characters {''.join(missing[:20])!r} "
                                       "of the tiny corpus word lists")


# --------------------------------------------------------------------------------------------- words

def load_word_lists() -> Dict[str, List[str]]:
    """The shipped word lists ``{language: [word, ...]}`` (textssr/assets/, one word a line)."""
    assets = importlib.resources.files("textssr").joinpath("assets")
    return {language: assets.joinpath(name).read_text(encoding="utf-8").split()
            for language, name in WORD_LISTS.items()}


def split_words(words: Dict[str, Sequence[str]], seed: int) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """Split each list into (train, bench) pools: BENCH_WORD_FRACTION of it, at random (seeded), goes to the bench."""
    rng = np.random.default_rng([seed, 2])
    train, bench = {}, {}
    for language in sorted(words):
        order = rng.permutation(len(words[language]))
        num_bench = max(1, round(BENCH_WORD_FRACTION * len(order)))
        bench[language] = [words[language][i] for i in sorted(order[:num_bench])]
        train[language] = [words[language][i] for i in sorted(order[num_bench:])]
    return train, bench


def draw_word(rng: np.random.Generator, pool: Dict[str, Sequence[str]]) -> Tuple[str, str]:
    """One (text, language): a Chinese word with CHINESE_WORD_PROBABILITY, else a Latin word in a random case."""
    if rng.random() < CHINESE_WORD_PROBABILITY:
        return pool[CHINESE][rng.integers(len(pool[CHINESE]))], CHINESE
    word = pool[LATIN][rng.integers(len(pool[LATIN]))]
    style = CASE_STYLES[0][rng.choice(len(CASE_STYLES[0]), p=CASE_STYLES[1])]
    return style(word), LATIN


# --------------------------------------------------------------------------------------------- pixels

def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB colours in [0, 1], shape (..., 3) → (...)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """WCAG contrast ratio (1–21) of two sRGB colours in [0, 1]."""
    la, lb = float(luminance(a)), float(luminance(b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random sRGB colour in [0, 1], shape (3,), drawn in HSV so that greys and vivid colours both occur."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(0, 256), rng.integers(0, 256)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in about [-1, 1], shape (height, width): normal samples on a ``cell``-px grid, bicubic-upsampled."""
    grid = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(-2.5, 2.5) / 2.5


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A scene-like background: float32 RGB (height, width, 3) in [0, 1].

    A base (flat, linear gradient, or two-colour fractal noise), then 0–7 structures (blocks, stripes,
    ellipses, lines) of random colours and opacities, a blur that makes it read as out-of-focus scenery,
    and fine grain.
    """
    kind = rng.integers(3)
    c0, c1 = random_colour(rng), random_colour(rng)
    if kind == 0:
        image = np.broadcast_to(c0, (height, width, 3)).astype(np.float32)
    elif kind == 1:
        theta = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = (np.cos(theta) * xs + np.sin(theta) * ys)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        image = (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)
    else:
        t = sum(smooth_noise(rng, height, width, cell) * 0.5 ** octave
                for octave, cell in enumerate((rng.uniform(40, 120), 24.0, 8.0)))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        image = (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)

    image = np.ascontiguousarray(image)
    for _ in range(rng.integers(0, 8)):
        layer = image.copy()
        colour = tuple(float(c) for c in random_colour(rng))
        shape = rng.integers(4)
        if shape == 0:  # block, e.g. a window, a wall panel, a poster
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            box = ((cx, cy), (rng.uniform(0.1, 0.8) * width, rng.uniform(0.1, 0.8) * height), rng.normal(0, 10))
            cv2.fillPoly(layer, [np.round(cv2.boxPoints(box)).astype(np.int32)], colour, cv2.LINE_AA)
        elif shape == 1:  # stripes: bricks, blinds, shelves
            period, duty, theta = rng.uniform(6, 40), rng.uniform(0.2, 0.6), rng.uniform(0, np.pi)
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            phase = ((np.cos(theta) * xs + np.sin(theta) * ys) / period) % 1.0
            layer = np.where((phase < duty)[..., None], np.asarray(colour, np.float32), layer)
        elif shape == 2:
            center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            axes = (int(rng.uniform(10, width / 2)), int(rng.uniform(10, height / 2)))
            cv2.ellipse(layer, center, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            points = np.stack([rng.uniform(0, width, 2), rng.uniform(0, height, 2)], axis=1).astype(np.int32)
            cv2.line(layer, tuple(points[0]), tuple(points[1]), colour, int(rng.integers(1, 12)), cv2.LINE_AA)
        opacity = rng.uniform(0.3, 1.0)
        image = image * (1 - opacity) + layer * opacity

    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 3.0))
    image = image + rng.normal(0, rng.uniform(0.0, 0.02), image.shape).astype(np.float32)
    return image.clip(0, 1).astype(np.float32)


def render_ink(text: str, font: ImageFont.FreeTypeFont, pad: int = 2) -> np.ndarray:
    """``text`` on one line: float32 ink coverage (h, w) in [0, 1], cropped to the ink with ``pad`` zero px around."""
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, fill=255)
    ink = np.asarray(canvas)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.pad(ink, pad).astype(np.float32) / 255


def ink_box(ink: np.ndarray, pad: int = 2, margin: float = POLYGON_MARGIN) -> np.ndarray:
    """The corners of ``render_ink``'s ink box grown by ``margin``, float (4, 2) (x, y), clockwise from top-left.

    Pixel centres sit at integer coordinates (OpenCV's convention), so pixel i covers [i − 0.5, i + 0.5].
    """
    h, w = ink.shape
    x0, y0, x1, y1 = pad - 0.5 - margin, pad - 0.5 - margin, w - pad - 0.5 + margin, h - pad - 0.5 + margin
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def placement_matrix(ink_shape: Tuple[int, int], angle: float, center: Tuple[float, float]) -> np.ndarray:
    """Affine (2, 3) taking ink-canvas coordinates to the scene: rotate ``angle`` degrees counter-clockwise about
    the canvas centre, then move that centre to ``center`` (x, y)."""
    h, w = ink_shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    matrix[:, 2] += np.asarray(center) - np.array([(w - 1) / 2, (h - 1) / 2])
    return matrix


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def grow_box(box: np.ndarray, pad_x: float, pad_y: float) -> np.ndarray:
    """A clockwise-from-top-left box (4, 2) of the unrotated canvas, grown by pad_x / pad_y on each side."""
    return box + np.array([[-pad_x, -pad_y], [pad_x, -pad_y], [pad_x, pad_y], [-pad_x, pad_y]])


# --------------------------------------------------------------------------------------------- scenes

@dataclass
class Instance:
    """One word of a scene. ``polygon``: 4 int (x, y) points clockwise from the text's top-left; ``ink``: float32
    (H, W) coverage of this word in the scene; ``ink_height``: px of the unrotated ink box; ``contrast``: WCAG
    ratio of its colour against the mean background under its ink."""
    text: str
    language: str
    polygon: List[List[int]]
    angle: float
    ink_height: int
    contrast: float
    ink: np.ndarray

    def annotation(self) -> dict:
        return {"polygon": self.polygon, "text": self.text, "language": self.language}


@dataclass
class Scene:
    image: np.ndarray  # uint8 RGB (H, W, 3)
    instances: List[Instance]


def _choose_font(rng: np.random.Generator, fonts: FontBank, language: str) -> int:
    choices = fonts.cjk if language == CHINESE else range(len(fonts.paths))
    return int(rng.choice(list(choices)))


def _fit_word(rng: np.random.Generator, fonts: FontBank, font_index: int, text: str, angle: float,
              plate_pad: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Render ``text`` at a random size, shrunk until its footprint fits the image; return (ink, footprint).

    The footprint (4, 2), centred on the origin, is the rotated ink box grown by ``plate_pad`` (× the ink
    height, room for a plate) and WORD_GAP: the area no other word may enter.
    """
    room = np.array([width, height]) - 2 * EDGE_MARGIN - 1
    size = max(MIN_FONT_SIZE, int(rng.uniform(*FONT_SIZE_FRACTION) * min(height, width)))
    while True:
        ink = render_ink(text, fonts.get(font_index, size))
        box = ink_box(ink)
        pad = plate_pad * (box[2, 1] - box[0, 1]) + WORD_GAP
        footprint = transform(grow_box(box, *pad), placement_matrix(ink.shape, angle, (0.0, 0.0)))
        excess = float(np.max(np.ptp(footprint, axis=0) / room))
        if excess <= 1 or size == MIN_FONT_SIZE:
            return ink, footprint
        size = max(MIN_FONT_SIZE, min(size - 1, int(size / excess)))


def _place(rng: np.random.Generator, footprint: np.ndarray, occupied: np.ndarray) -> Optional[np.ndarray]:
    """Try random positions for ``footprint`` (4, 2), centred at the origin; return the first offset (2,) where it
    lies inside the image (EDGE_MARGIN) and off ``occupied`` (uint8 (H, W)), else None."""
    height, width = occupied.shape
    low = EDGE_MARGIN - footprint.min(axis=0)
    high = np.array([width - 1, height - 1]) - EDGE_MARGIN - footprint.max(axis=0)
    if np.any(high < low):
        return None
    candidate = np.zeros_like(occupied)
    for _ in range(PLACEMENT_TRIES):
        offset = rng.uniform(low, high)
        candidate[:] = 0
        cv2.fillPoly(candidate, [np.round(footprint + offset).astype(np.int32)], 1)
        if not np.any(candidate & occupied):
            return offset
    return None


def _text_colour(rng: np.random.Generator, background: np.ndarray) -> Tuple[np.ndarray, float]:
    """A colour of contrast ≥ MIN_CONTRAST against ``background`` (3,), and that contrast; black or white as a
    last resort (one of them always reaches √21 ≈ 4.6)."""
    for _ in range(COLOUR_TRIES):
        colour = random_colour(rng)
        ratio = contrast_ratio(colour, background)
        if ratio >= MIN_CONTRAST:
            return colour, ratio
    candidates = [np.zeros(3), np.ones(3)]
    ratios = [contrast_ratio(c, background) for c in candidates]
    best = int(np.argmax(ratios))
    return candidates[best], ratios[best]


def draw_scene(rng: np.random.Generator, height: int, width: int, pool: Dict[str, Sequence[str]],
               fonts: FontBank) -> Scene:
    """One scene image with 1–4 non-overlapping words from ``pool`` ({language: words}); all randomness from ``rng``.

    The first word always fits (it is shrunk until its footprint fits the image); a later word that finds no
    free place in PLACEMENT_TRIES is dropped.
    """
    image = draw_background(rng, height, width)
    occupied = np.zeros((height, width), np.uint8)
    instances: List[Instance] = []
    num_words = rng.choice(WORDS_PER_IMAGE[0], p=WORDS_PER_IMAGE[1])
    for _ in range(num_words):
        text, language = draw_word(rng, pool)
        font_index = _choose_font(rng, fonts, language)
        angle = float(np.clip(rng.normal(0, ANGLE_STD), -MAX_ANGLE, MAX_ANGLE))
        plate_pad = rng.uniform(*PLATE_PAD, size=2)
        ink, footprint = _fit_word(rng, fonts, font_index, text, angle, plate_pad, height, width)
        offset = _place(rng, footprint, occupied)
        if offset is None:
            continue
        box = ink_box(ink)
        ink_height = int(round(box[2, 1] - box[0, 1] - 2 * POLYGON_MARGIN))
        matrix = placement_matrix(ink.shape, angle, tuple(offset))
        cv2.fillPoly(occupied, [np.round(footprint + offset).astype(np.int32)], 1)

        coverage = cv2.warpAffine(ink, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
        weights = coverage / coverage.sum()
        under = np.einsum("hw,hwc->c", weights, image)
        busy = np.sqrt(np.einsum("hw,hw->", weights, (luminance(image) - luminance(under)) ** 2))
        if busy > BUSY_STD or rng.random() < PLATE_PROBABILITY:
            plate = np.round(transform(grow_box(box, *(plate_pad * ink_height)), matrix)).astype(np.int32)
            cv2.fillPoly(image, [plate], tuple(float(c) for c in random_colour(rng)), cv2.LINE_AA)
            under = np.einsum("hw,hwc->c", weights, image)
        colour, ratio = _text_colour(rng, under)
        image = image * (1 - coverage[..., None]) + colour.astype(np.float32) * coverage[..., None]

        polygon = np.round(transform(box, matrix)).astype(int).tolist()
        instances.append(Instance(text, language, polygon, angle, ink_height, ratio, coverage))

    if rng.random() < CAMERA_BLUR_PROBABILITY:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*CAMERA_BLUR_SIGMA))
    image = image + rng.normal(0, rng.uniform(0, CAMERA_NOISE_MAX), image.shape).astype(np.float32)
    return Scene((image.clip(0, 1) * 255 + 0.5).astype(np.uint8), instances)


def is_clean(instance: Instance) -> bool:
    """Step 2's filter: large, nearly level, high-contrast words."""
    return (instance.ink_height >= STEP2_MIN_INK_HEIGHT and abs(instance.angle) <= STEP2_MAX_ANGLE
            and instance.contrast >= STEP2_MIN_CONTRAST)


# --------------------------------------------------------------------------------------------- corpus

def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image: independent of every other image, so any image can be redrawn alone."""
    return np.random.default_rng([seed, {"train": 0, "bench": 1}[split], index])


def scene_size(rng: np.random.Generator, resolution: Tuple[int, int]) -> Tuple[int, int]:
    """(height, width), each uniform in [resolution[0], resolution[1]]."""
    return int(rng.integers(resolution[0], resolution[1] + 1)), int(rng.integers(resolution[0], resolution[1] + 1))


def write_split(out_dir: Path, prefix: str, split: str, num_images: int, seed: int, resolution: Tuple[int, int],
                pool: Dict[str, Sequence[str]], fonts: FontBank, progress: bool
                ) -> Tuple[List[dict], List[dict], Dict[str, str]]:
    """Draw and save ``num_images`` scenes into ``out_dir``/images/.

    Returns (all entries, clean entries, {img_name: sha256 of the pixels}); entries are AnyWord data_list
    items, the clean ones holding only the ``is_clean`` annotations of images that have any.
    """
    (out_dir / "images").mkdir(parents=True)
    entries, clean_entries, digests = [], [], {}
    for index in tqdm(range(num_images), desc=f"tiny corpus: {split} images", disable=not progress):
        rng = scene_rng(seed, split, index)
        scene = draw_scene(rng, *scene_size(rng, resolution), pool, fonts)
        name = f"{prefix}_{index:06d}.jpg"
        Image.fromarray(scene.image).save(out_dir / "images" / name, quality=JPEG_QUALITY)
        digests[name] = hashlib.sha256(scene.image.tobytes()).hexdigest()
        entries.append({"img_name": name, "annotations": [i.annotation() for i in scene.instances]})
        clean = [i.annotation() for i in scene.instances if is_clean(i)]
        if clean:
            clean_entries.append({"img_name": name, "annotations": clean})
    return entries, clean_entries, digests


def check_disjoint(train_entries: Sequence[dict], bench_entries: Sequence[dict],
                   train_digests: Dict[str, str], bench_digests: Dict[str, str]) -> None:
    """Raise if a bench word (case-insensitively) or a bench image (its pixels) also occurs in training."""
    def words(entries):
        return {a["text"].casefold() for e in entries for a in e["annotations"]}

    shared_words = words(train_entries) & words(bench_entries)
    if shared_words:
        raise AssertionError(f"bench words also in training: {sorted(shared_words)[:10]}")
    shared_images = set(train_digests.values()) & set(bench_digests.values())
    if shared_images:
        raise AssertionError(f"{len(shared_images)} bench images are identical to training images")


def write_json(path: Path, entries: Sequence[dict], data_root: str = "images") -> None:
    path.write_text(json.dumps({"data_root": data_root, "data_list": list(entries)}, ensure_ascii=False,
                               indent=1) + "\n", encoding="utf-8")


def count(entries: Sequence[dict]) -> dict:
    languages: Dict[str, int] = {}
    for entry in entries:
        for annotation in entry["annotations"]:
            languages[annotation["language"]] = languages.get(annotation["language"], 0) + 1
    return {"images": len(entries), "instances": sum(languages.values()), "languages": dict(sorted(languages.items()))}


def corpus_arguments(num_images: int, bench_images: int, seed: int, resolution: Tuple[int, int],
                     build_lmdbs: bool) -> dict:
    """What decides the corpus's content: recorded in the manifest, compared on a re-run."""
    return {"generator_version": GENERATOR_VERSION, "num_images": num_images, "bench_images": bench_images,
            "seed": seed, "resolution": list(resolution), "lmdb": build_lmdbs}


def validate_arguments(num_images: int, bench_images: int, resolution: Tuple[int, int]) -> None:
    if num_images < 1 or bench_images < 1:
        raise DataError(f"--num-images and --bench-images must be >= 1, got {num_images} and {bench_images}")
    low, high = resolution
    if not 128 <= low <= high:
        raise DataError(f"--resolution LOW HIGH needs 128 <= LOW <= HIGH, got {low} {high}")


def prepare_out_dir(out_dir: Path, arguments: dict) -> bool:
    """Return True if ``out_dir`` already holds a complete corpus made with ``arguments``.

    Otherwise leave it ready for a fresh corpus: the entries of an unfinished run (no manifest) are removed.
    A complete corpus with other arguments, or a folder holding anything else, is an error.
    """
    manifest_path = out_dir / "manifest.json"
    if manifest_path.is_file():
        made_with = json.loads(manifest_path.read_text(encoding="utf-8"))["arguments"]
        if made_with == arguments:
            return True
        raise DataError(f"{out_dir} holds a tiny corpus made with {made_with}, not {arguments}: "
                          f"delete it (rm -r {out_dir}) or choose another --out")
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OWNED_ENTRIES)
        if foreign:
            raise DataError(f"{out_dir} is not a tiny corpus folder (it holds {foreign[:5]}): "
                              "choose an empty or new --out")
        for name in OWNED_ENTRIES:  # an unfinished run: start over
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return False


def generate(out_dir: Path | str = DEFAULT_OUT, num_images: int = DEFAULT_NUM_IMAGES,
             bench_images: int = DEFAULT_BENCH_IMAGES, seed: int = DEFAULT_SEED,
             resolution: Tuple[int, int] = DEFAULT_RESOLUTION, build_lmdbs: bool = True,
             progress: bool = True) -> dict:
    """Write the tiny corpus under ``out_dir`` (see the module docstring) and return its manifest.

    ``build_lmdbs=False`` writes only the JSON and images (and a manifest that says so). A complete corpus
    made with the same arguments is left as it is and its manifest returned.
    """
    out_dir = Path(out_dir)
    validate_arguments(num_images, bench_images, resolution)
    arguments = corpus_arguments(num_images, bench_images, seed, resolution, build_lmdbs)
    if prepare_out_dir(out_dir, arguments):
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        manifest["reused"] = True
        return manifest

    fonts = FontBank()
    words = load_word_lists()
    fonts.check_coverage(words)
    train_pool, bench_pool = split_words(words, seed)
    train, step2, train_digests = write_split(out_dir, "tiny", "train", num_images, seed, resolution,
                                              train_pool, fonts, progress)
    bench, _, bench_digests = write_split(out_dir / "bench", "bench", "bench", bench_images, seed, resolution,
                                          bench_pool, fonts, progress)
    check_disjoint(train, bench, train_digests, bench_digests)
    write_json(out_dir / "train.json", train)
    write_json(out_dir / "step2.json", step2)
    write_json(out_dir / "bench" / "test.json", bench)
    if build_lmdbs:
        for json_name, lmdb_name in (("train.json", "step1_lmdb"), ("step2.json", "step2_lmdb")):
            build_lmdb([str(out_dir / json_name)], str(out_dir / "AnyWord-lmdb" / lmdb_name), progress=progress)

    manifest = {"arguments": arguments, "train": count(train), "step2": count(step2), "bench": count(bench),
                "fonts": fonts.names, "bench_word_pool": {k: len(v) for k, v in bench_pool.items()},
                "train_word_pool": {k: len(v) for k, v in train_pool.items()}}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m textssr.data.tiny_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    parser.add_argument("--num-images", type=int, default=DEFAULT_NUM_IMAGES, help="training images")
    parser.add_argument("--bench-images", type=int, default=DEFAULT_BENCH_IMAGES, help="bench images")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--resolution", type=int, nargs=2, default=list(DEFAULT_RESOLUTION), metavar=("LOW", "HIGH"),
                        help="scene image sides in px, drawn uniformly in [LOW, HIGH] per image and axis")
    args = parser.parse_args(argv)
    try:
        manifest = generate(args.out, args.num_images, args.bench_images, args.seed, tuple(args.resolution))
    except DataError as error:
        exit_on_input_error(error)
    if manifest.get("reused"):
        print(f"{args.out} already holds the tiny corpus for these arguments: nothing to do")
    else:
        print(f"tiny corpus written to {args.out}: " + ", ".join(
            f"{part} {manifest[part]['images']} images / {manifest[part]['instances']} words"
            for part in ("train", "step2", "bench")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
