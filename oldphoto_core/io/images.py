"""Reading and writing photos at their full precision.

OpenCV decodes the pixels (it keeps 16-bit PNG/TIFF and alpha, which PIL flattens to 8 bits for
RGB); PIL decodes what the installed OpenCV cannot (GIF before OpenCV 4.11, for instance), reads
the EXIF orientation, which we apply ourselves because OpenCV's unchanged mode ignores it, and
reads the header, so that an image's size is known - and a 40000x40000 claim refused - before a
single pixel is decoded. Images come back as ``[1, C, H, W]`` float32 in 0..1 with C = 1 (gray),
3 or 4.

Every failure of a file, whatever library raised it, leaves as an :class:`InputError` naming the
file and the problem, so that a batch can report it and go on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..errors import InputError, OutputError

__all__ = ["ImageInfo", "read_image", "write_image", "to_integer", "probe_image",
           "IMAGE_SUFFIXES", "opencv_pixel_limit"]

#: The formats a folder run takes, by suffix (lower case): those :func:`read_image` reads with
#: any supported OpenCV (>= 4.8) and Pillow, checked one by one in ``tests/test_imageio.py``.
#: Float formats (HDR, EXR, PFM) are not photos' formats and are refused.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib",
                  ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm")
_EXIF_ORIENTATION = 0x0112
_OPENCV_DEFAULT_PIXEL_LIMIT = 1 << 30   # OpenCV's CV_IO_MAX_IMAGE_PIXELS default
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What the file was: ``bit_depth`` (8 or 16) and ``channels`` (1, 3 or 4)."""

    bit_depth: int
    channels: int


def opencv_pixel_limit() -> int:
    """The largest image OpenCV decodes (``$CV_IO_MAX_IMAGE_PIXELS``, default 2**30 pixels)."""
    try:
        return int(os.environ.get("CV_IO_MAX_IMAGE_PIXELS", _OPENCV_DEFAULT_PIXEL_LIMIT))
    except ValueError:
        return _OPENCV_DEFAULT_PIXEL_LIMIT


def _check_file(p: Path) -> None:
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image")
    try:
        size = p.stat().st_size
        with p.open("rb"):
            pass
    except PermissionError as exc:
        raise InputError(f"{p}: cannot be read: permission denied") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot be read: {exc.strerror or exc}") from exc
    if size == 0:
        raise InputError(f"{p}: the file is empty (0 bytes), not an image")


def probe_image(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` from the file's header, without decoding its pixels where Pillow
    parses the header (every accepted format); a size beyond OpenCV's decoding limit
    (:func:`opencv_pixel_limit`) is refused here.

    Raises:
        InputError: missing, empty, unreadable, not an image, or beyond OpenCV's limit.
    """
    h, w, _ = _probe(Path(path))
    return h, w


@contextmanager
def _pillow_open(p: Path) -> Iterator[Image.Image]:
    """``Image.open`` without Pillow's decompression-bomb guard (lifted under a lock, for the
    open only): the size is what we want to know, and whether it fits is decided by our own
    limits (:func:`opencv_pixel_limit`, :mod:`oldphoto_core.runtime.memory`), with a message
    that says so, instead of Pillow's warning or error."""
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(p)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with im:
        yield im


def _header_size(p: Path) -> tuple[int, int] | str:
    """``(h, w)`` from Pillow's header parser, or why Pillow could not parse it."""
    try:
        with _pillow_open(p) as im:
            w, h = im.size
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError ...
        return str(exc)
    return h, w


def _probe(p: Path) -> tuple[int, int, np.ndarray | None]:
    """Size, and the decoded pixels when finding the size took decoding them (formats whose
    header Pillow does not parse, e.g. 3-channel float TIFF; OpenCV's own limit applies)."""
    _check_file(p)
    size = _header_size(p)
    arr = None
    if isinstance(size, str):
        arr = _decode(p, pillow_said=size)
        size = arr.shape[:2]
    h, w = size
    if w <= 0 or h <= 0:
        raise InputError(f"{p}: the header gives an empty size {w}x{h}")
    limit = opencv_pixel_limit()
    if h * w > limit:
        raise InputError(
            f"{p}: its header says {w}x{h} pixels ({h * w / 1e6:.0f} MP), more than OpenCV's "
            f"decoding limit of {limit / 1e6:.0f} MP (environment variable "
            f"CV_IO_MAX_IMAGE_PIXELS); a scan that size is almost certainly a corrupt header")
    return h, w, arr


def _orientation(path: Path) -> int:
    try:
        with _pillow_open(path) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # no EXIF, or a format PIL cannot parse: nothing to apply
        return 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientations 2-8 as transposes/flips (1 and unknown values: unchanged); a view."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    return ops[orientation](arr) if orientation in ops else arr


def _decode_with_pil(p: Path) -> np.ndarray | None:
    """HWC (or HW) uint8/uint16 in OpenCV's BGR(A) order, for what OpenCV cannot decode."""
    try:
        with _pillow_open(p) as im:  # size already checked against our limits by the caller
            im.seek(0)  # the first frame of an animation
            if im.mode == "1":
                im = im.convert("L")
            elif im.mode not in ("L", "RGB", "RGBA", "I;16"):
                alpha = "A" in im.getbands() or "transparency" in im.info
                im = im.convert("RGBA" if alpha else "RGB")
            arr = np.asarray(im)
    except Exception:
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr[..., ::-1]
    if arr.ndim == 3 and arr.shape[2] == 4:
        return arr[..., [2, 1, 0, 3]]
    return arr


def _decode(p: Path, pillow_said: str = "") -> np.ndarray:
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{p}: cannot be read: {exc.strerror or exc}") from exc
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    del data
    if arr is None and not pillow_said:
        arr = _decode_with_pil(p)
    if arr is None:
        raise InputError(f"{p}: cannot be decoded: not an image, or a corrupt or truncated "
                         f"file" + (f" (Pillow: {pillow_said})" if pillow_said else ""))
    return arr


def read_image(path: str | os.PathLike[str]) -> tuple[torch.Tensor, ImageInfo]:
    """Read a photo as ``[1, C, H, W]`` float32 0..1, EXIF orientation applied.

    The size is read from the header first (:func:`probe_image`): an image larger than
    OpenCV's pixel limit is refused before decoding. Memory is the decoded array plus the
    float32 result (no float temporaries).

    Raises:
        InputError: missing, empty, unreadable, corrupt, too large to decode, out of memory, or
            of an unsupported pixel format. Always names the file.
    """
    p = Path(path)
    h, w, arr = _probe(p)
    try:
        arr = _decode(p) if arr is None else arr
        return _to_tensor(p, arr, _orientation(p))
    except MemoryError as exc:
        raise InputError(f"{p}: not enough memory to decode {w}x{h} pixels") from exc


def _to_tensor(p: Path, arr: np.ndarray, orientation: int) -> tuple[torch.Tensor, ImageInfo]:
    if arr.dtype == np.uint8:
        depth, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        depth, scale = 16, 65535.0
    else:
        raise InputError(f"{p}: unsupported pixel type {arr.dtype} (expected 8 or 16 bits per "
                         f"channel; float formats such as HDR/EXR are not photos' formats)")
    if arr.ndim == 2:
        arr = arr[..., None]
    c = arr.shape[2]
    # source channel (OpenCV's BGR(A) order) of each output channel (RGB(A)); gray + alpha
    # becomes RGBA
    order = {1: [0], 3: [2, 1, 0], 4: [2, 1, 0, 3], 2: [0, 0, 0, 1]}.get(c)
    if order is None:
        raise InputError(f"{p}: unsupported number of channels {c}")
    arr = _apply_orientation(arr, orientation)
    h, w = arr.shape[:2]
    out = torch.empty(1, len(order), h, w, dtype=torch.float32)
    for dst, src in enumerate(order):  # one plane at a time: no full-size float temporaries
        plane = np.ascontiguousarray(arr[..., src])
        out[0, dst].copy_(torch.from_numpy(plane.astype(np.int32) if depth == 16 else plane))
    out.div_(scale)
    return out, ImageInfo(bit_depth=depth, channels=len(order))


def to_integer(image: torch.Tensor, bit_depth: int = 8,
               order: list[int] | None = None) -> np.ndarray:
    """``[C, H, W]`` float 0..1 -> ``[H, W, C']`` uint8 or uint16 (rounded half up), with the
    channels in ``order`` (default: as they are). What every written file stores, so an
    array handed to a caller holds the same levels as the PNG the CLI would write.

    Quantised plane by plane: the only full-size copy is the integer array.
    """
    scale, dtype = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    order = list(range(image.shape[0])) if order is None else order
    arr = np.empty((image.shape[1], image.shape[2], len(order)), dtype=dtype)
    for dst, src in enumerate(order):  # one plane at a time: no full-size float temporaries
        plane = image[src].detach().float().cpu().clamp(0, 1).mul_(scale).add_(0.5).floor_()
        arr[..., dst] = plane.numpy()
    return arr


def write_image(path: str | os.PathLike[str], image: torch.Tensor, *, bit_depth: int = 8) -> None:
    """Write ``[1, C, H, W]`` or ``[C, H, W]`` float 0..1 (C = 1, 3, 4) as 8- or 16-bit.

    Quantised plane by plane into the interleaved integer array OpenCV encodes, so the only
    full-size copy is that array.

    Raises:
        OutputError: the folder cannot be created, the file cannot be written or encoded.
    """
    x = image[0] if image.ndim == 4 else image
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise InputError(f"write_image: expected [C, H, W] with C = 1, 3 or 4, got shape "
                         f"{tuple(image.shape)}")
    order = {1: [0], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[x.shape[0]]  # to OpenCV's BGR(A)
    arr = to_integer(x, bit_depth, order)
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(p.suffix or ".png", arr)
        if not ok:
            raise OutputError(f"{p}: cannot encode as {p.suffix}")
        buf.tofile(str(p))
    except cv2.error as exc:
        raise OutputError(f"{p}: cannot encode as {p.suffix}: {exc}") from exc
    except OSError as exc:
        raise OutputError(f"{p}: cannot be written: {exc.strerror or exc}") from exc
