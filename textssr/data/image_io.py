"""Image I/O for the datasets: decoding (whole images, or only a crop's window of a JPEG) and the per-process
decoded-image cache with its window-or-whole policy. What a sample *is* lives in :mod:`textssr.data.sample`.

Whole decodes go through simplejpeg (libjpeg-turbo: the same integer IDCT and upsampling as Pillow and OpenCV, so
the same pixels) and OpenCV for what it refuses; window decodes through the optional C extension
``textssr.data._jpeg_window`` (built by setup.py over the system's libjpeg-turbo; without it whole images are
decoded: same samples, slower).
"""
from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Callable, Optional, Tuple

import cv2
import numpy as np
import simplejpeg

from textssr.data import geometry
from textssr.data.skips import EMPTY_EXTENT, IMAGE_MISSING, IMAGE_UNREADABLE, SkipSample

try:  # the optional C extension (setup.py); without it whole images are decoded: same samples, slower
    from textssr.data._jpeg_window import decode_window as _jpeg_window
except ImportError:  # pragma: no cover - built wherever libjpeg-turbo's headers are installed
    _jpeg_window = None

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
JPEG_EOI_WINDOW = 65536  # a JPEG without its end marker in its last 64 KiB is truncated
WINDOW_DECODING = _jpeg_window is not None
WINDOW_MARGIN = 8  # px decoded around a window: the edge pixels of a cropped decode differ from a full one's


class Laps:
    """Accumulates named durations into ``sink`` (a Counter of seconds); does nothing when ``sink`` is None.
    ``clock`` is wall time; a benchmark on a busy machine may set it to ``time.process_time`` (CPU time)."""

    clock = staticmethod(time.perf_counter)

    def __init__(self, sink: Optional[Counter]):
        self.sink, self.t = sink, self.clock() if sink is not None else 0.0

    def __call__(self, name: str) -> None:
        if self.sink is not None:
            now = self.clock()
            self.sink[name] += now - self.t
            self.t = now


def _decode_jpeg(data: bytes) -> Optional[np.ndarray]:
    """BGR pixels of a JPEG through simplejpeg (libjpeg-turbo, the same integer IDCT and fancy upsampling as
    OpenCV and Pillow, so the same pixels), about 2x faster than ``cv2.imdecode`` on 1280x720 photos; None
    for what it cannot convert to BGR (CMYK, 12-bit, lossless, ...) or cannot parse: OpenCV then decides."""
    try:
        return simplejpeg.decode_jpeg(data, "BGR", strict=False)
    except ValueError:
        return None


def _check_jpeg_end(data: bytes, where: str) -> None:
    if data.rfind(JPEG_EOI, max(0, len(data) - JPEG_EOI_WINDOW)) < 0:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: truncated JPEG (no end marker)")


def decode_window(data: Optional[bytes], window: geometry.Box, where: str) -> Optional[np.ndarray]:
    """uint8 BGR (y1 − y0, x1 − x0, 3), equal to ``decode_image(data)[y0:y1, x0:x1]``, decoding only the rows
    down to the window's bottom and, in them, only the columns around it (3–4× less work than a whole
    1280×720 photo for a word). None when that is not possible — not a JPEG, the C extension not built, a
    colour space without BGR conversion, a stream the system's libjpeg rejects, a window outside the image —:
    the caller then decodes the whole image, which decides what is unreadable. A truncated JPEG raises
    SkipSample("image_unreadable") as :func:`decode_image` does."""
    if _jpeg_window is None or not data or data[:2] != JPEG_SOI:
        return None
    _check_jpeg_end(data, where)
    x0, y0, x1, y1 = window
    try:
        got = _jpeg_window(data, x0 - WINDOW_MARGIN, y0 - WINDOW_MARGIN, x1 + WINDOW_MARGIN, y1 + WINDOW_MARGIN)
    except ValueError:
        return None
    if got is None:
        return None
    rows, xoffset, yoffset, width, height = got
    if x0 < xoffset or y0 < yoffset or x1 > xoffset + width or y1 > yoffset + height:
        return None
    return np.frombuffer(rows, np.uint8).reshape(height, width, 3)[y0 - yoffset:y1 - yoffset,
                                                                   x0 - xoffset:x1 - xoffset]


def decode_image(data: Optional[bytes], where: str) -> np.ndarray:
    """uint8 BGR (H, W, 3) from encoded bytes (JPEG/PNG/...), raw pixel orientation (EXIF ignored, as Pillow
    and the annotations have it). JPEGs go through simplejpeg, anything it refuses and other formats through
    OpenCV. Raises SkipSample("image_unreadable") for bytes neither can decode or a truncated JPEG (decoders
    would return it half gray)."""
    if not data:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: empty file")
    image = None
    if data[:2] == JPEG_SOI:
        _check_jpeg_end(data, where)
        image = _decode_jpeg(data)
    if image is None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: not a decodable image")
    return image


def image_extent(image: np.ndarray, where: str) -> geometry.Box:
    """Content extent of a decoded BGR image; SkipSample("empty_extent") when it is all white."""
    extent = geometry.content_extent(image, bgr=True)
    if extent is None:
        raise SkipSample(EMPTY_EXTENT, f"{where}: image is all white")
    return extent


IMAGE_CACHE_SIZE = 2  # decoded images kept per process: consecutive annotations of one image decode once
SEQUENTIAL_WHOLE = 3  # at a steady stride, an image the next 3 samples also use is decoded whole, once


class ImageReader:
    """The crop windows of one dataset's images. ``window(index, key, polygon, rng, where)`` returns the crop (uint8
    BGR pixels of the window) and the window, drawn by ``region_window`` from the image's content extent.

    A sample whose image is not in the small decoded-image cache and whose content extent is known
    (``stored_extent(key)``: an LMDB index, or learned from an earlier decode) decodes only its window
    (:func:`decode_window`; the same pixels). When the reading pattern will come back to the image soon (the same
    sample again, or a steady stride whose next ``SEQUENTIAL_WHOLE`` samples use it: inference and synthesis, per
    rank) the image is decoded whole once and cached instead (a word's window costs a tenth to a third of a whole
    1280×720 photo). ``window_decode = False`` always decodes whole images.
    """

    def __init__(self, image_bytes: Callable, image_key: Callable[[int], object], length: Callable[[], int],
                 stored_extent: Callable, learn_extent: Callable):
        self.image_bytes, self.image_key, self.length = image_bytes, image_key, length
        self.stored_extent, self.learn_extent = stored_extent, learn_extent
        self.window_decode = True
        self.timings: Optional[Counter] = None  # a Counter to accumulate per-stage seconds (benchmark)
        self.cache: "OrderedDict[object, Tuple[np.ndarray, geometry.Box]]" = OrderedDict()
        self.last: Tuple[object, Optional[int]] = (None, None)  # (image key, index) of the previous sample

    def window(self, index: int, key, polygon: np.ndarray, rng, where: str, region_window: Callable):
        """(crop, window) of sample ``index`` (image ``key``)."""
        crop, window, data = self._window_only(index, key, polygon, rng, where, region_window)
        self.last = (key, index)
        if crop is None:
            image, extent = self.load(key, where, data)
            if window is None:
                window = region_window(extent, polygon, rng, where)
            x0, y0, x1, y1 = window
            crop = image[y0:y1, x0:x1]
        return crop, window

    def _window_only(self, index: int, key, polygon, rng, where: str, region_window: Callable):
        """(crop, window, bytes) decoded window-only when the image is not cached, its extent is known and the
        reading pattern does not come back to it soon; (None, window, bytes) when the window is drawn and the
        bytes read but the whole image must be decoded after all (from those bytes); (None, None, None)
        otherwise (the window is then drawn from the decoded image's extent)."""
        if not (self.window_decode and WINDOW_DECODING) or key in self.cache or self._reading_on(index, key):
            return None, None, None
        extent = self.stored_extent(key)
        if extent is None:
            return None, None, None
        window = region_window(extent, polygon, rng, where)
        data = self.read(key, where)
        lap = Laps(self.timings)
        crop = decode_window(data, window, where)
        lap("decode")
        return crop, window, data

    def _reading_on(self, index: int, key) -> bool:
        """Whether the reading pattern will soon come back to image ``key``, which is then worth decoding whole
        and caching: the same sample again (synthesis draws several variants of a region), or a steady stride
        (1, or the world size of a rank's share) whose next ``SEQUENTIAL_WHOLE`` samples use this image too."""
        last_index = self.last[1]
        if last_index is None:
            return False
        if index == last_index:
            return True
        stride = index - last_index
        return stride > 0 and all(index + k * stride < self.length() and self.image_key(index + k * stride) == key
                                  for k in range(1, SEQUENTIAL_WHOLE + 1))

    def read(self, key, where: str) -> bytes:
        data = self.image_bytes(key)
        if data is None:
            raise SkipSample(IMAGE_MISSING, f"{where}: image not found")
        return data

    def load(self, key, where: str, data: Optional[bytes] = None) -> Tuple[np.ndarray, geometry.Box]:
        """The decoded image and its extent, from the cache or from ``data`` (read when not given)."""
        cached = self.cache.get(key)
        if cached is not None:
            self.cache.move_to_end(key)
            return cached
        if data is None:
            data = self.read(key, where)
        lap = Laps(self.timings)
        image = decode_image(data, where)
        lap("decode")
        extent = self.stored_extent(key)
        if extent is None:
            extent = image_extent(image, where)
            self.learn_extent(key, extent)
        lap("extent")
        self.cache[key] = (image, extent)
        while len(self.cache) > IMAGE_CACHE_SIZE:
            self.cache.popitem(last=False)
        return image, extent

    def __getstate__(self):  # DataLoader workers: no decoded images in the pickle
        state = dict(self.__dict__)
        state["cache"] = OrderedDict()
        return state
