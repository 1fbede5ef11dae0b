"""Image I/O for the datasets: decoding (whole images, or only a crop's window of a JPEG) and the per-process
decoded-image cache with its window-or-whole policy. What a sample *is* lives in :mod:`textssr.data.sample`.

Whole JPEGs decode through simplejpeg (libjpeg-turbo: the same integer IDCT and upsampling as Pillow and OpenCV, so
the same pixels, ~2x faster than ``cv2.imdecode``), everything it refuses through OpenCV; windows through the
optional C extension ``textssr.data._jpeg_window`` (setup.py builds it over the system's libjpeg-turbo; without it
whole images are decoded: same samples, slower).
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Callable, Optional, Tuple

import cv2
import numpy as np
import simplejpeg

from textssr.data import geometry
from textssr.data.skips import EMPTY_EXTENT, IMAGE_MISSING, IMAGE_UNREADABLE, SkipSample
from textssr.utils.timing import Laps

try:
    from textssr.data._jpeg_window import decode_window as _jpeg_window
except ImportError:  # pragma: no cover - built wherever libjpeg-turbo's headers are installed
    _jpeg_window = None

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
JPEG_EOI_WINDOW = 65536  # a JPEG without its end marker in its last 64 KiB is truncated
WINDOW_DECODING = _jpeg_window is not None
WINDOW_MARGIN = 8  # px decoded around a window: the edge pixels of a cropped decode differ from a full one's
IMAGE_CACHE_SIZE = 2  # decoded images kept per process: consecutive annotations of one image decode once
SEQUENTIAL_WHOLE = 3  # at a steady stride, an image the next 3 samples also use is decoded whole, once


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
    and the annotations have it). Raises SkipSample("image_unreadable") for bytes no decoder takes or a truncated
    JPEG (decoders would return it half gray)."""
    if not data:
        raise SkipSample(IMAGE_UNREADABLE, f"{where}: empty file")
    image = None
    if data[:2] == JPEG_SOI:
        _check_jpeg_end(data, where)
        try:
            image = simplejpeg.decode_jpeg(data, "BGR", strict=False)
        except ValueError:  # CMYK, 12-bit, lossless, unparsable, ...: OpenCV decides
            pass
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


class ImageReader:
    """The crop windows of one dataset's images: :meth:`window` returns a sample's crop (uint8 BGR pixels of its
    window) and the window, drawn by ``region_window`` from the image's content extent.

    An image neither cached nor soon read again, whose extent is known without decoding (``stored_extent``: an
    LMDB index, or learned from an earlier decode), decodes only the window (:func:`decode_window`, a tenth to a
    third of a whole 1280×720 photo). One the reading pattern comes back to — the same sample again (synthesis
    variants), or a steady stride (inference and synthesis, per rank) whose next ``SEQUENTIAL_WHOLE`` samples use
    it — is decoded whole once and cached. ``window_decode = False`` always decodes whole images.
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
        """(crop, window, bytes) of a window-only decode; (None, window, bytes) when the window was drawn and the
        bytes read but the image must be decoded whole after all; (None, None, None) when it is not tried."""
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
        """Whether the reading pattern comes back to image ``key`` soon (see the class docstring)."""
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
        return dict(self.__dict__, cache=OrderedDict())
