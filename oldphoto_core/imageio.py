"""Reading and writing photos at their full precision.

OpenCV decodes the pixels (it keeps 16-bit PNG/TIFF and alpha, which PIL flattens to 8 bits for
RGB), PIL reads the EXIF orientation, which we apply ourselves because OpenCV's unchanged mode
ignores it. Images come back as ``[1, C, H, W]`` float32 in 0..1 with C = 1 (gray), 3 or 4.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import InputError

__all__ = ["ImageInfo", "read_image", "write_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What the file was: ``bit_depth`` (8 or 16) and ``channels`` (1, 3 or 4)."""

    bit_depth: int
    channels: int


def _orientation(path: Path) -> int:
    try:
        with Image.open(path) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # no EXIF, or a format PIL cannot parse: nothing to apply
        return 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientations 2-8 as transposes/flips (1 and unknown values: unchanged)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def read_image(path: str | os.PathLike[str]) -> tuple[torch.Tensor, ImageInfo]:
    """Read a photo as ``[1, C, H, W]`` float32 0..1, EXIF orientation applied.

    Raises:
        InputError: missing, unreadable, or of an unsupported pixel format.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    arr = cv2.imdecode(np.fromfile(str(p), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"{p}: not an image OpenCV can decode")
    if arr.dtype == np.uint8:
        depth, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        depth, scale = 16, 65535.0
    else:
        raise InputError(f"{p}: unsupported pixel type {arr.dtype} (expected 8 or 16 bits)")
    if arr.ndim == 2:
        arr = arr[..., None]
    c = arr.shape[2]
    if c == 3:
        arr = arr[..., ::-1]
    elif c == 4:
        arr = arr[..., [2, 1, 0, 3]]
    elif c == 2:  # gray + alpha: keep it as gray + alpha is rare; expand to RGBA
        arr = np.concatenate([arr[..., :1]] * 3 + [arr[..., 1:]], axis=2)
    arr = _apply_orientation(arr, _orientation(p))
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / scale)
    t = t.permute(2, 0, 1)[None].contiguous()
    return t, ImageInfo(bit_depth=depth, channels=t.shape[1])


def write_image(path: str | os.PathLike[str], image: torch.Tensor, *, bit_depth: int = 8) -> None:
    """Write ``[1, C, H, W]`` or ``[C, H, W]`` float 0..1 (C = 1, 3, 4) as 8- or 16-bit."""
    x = image[0] if image.ndim == 4 else image
    arr = x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if bit_depth == 16:
        arr = np.floor(arr * 65535 + 0.5).astype(np.uint16)
    else:
        arr = np.floor(arr * 255 + 0.5).astype(np.uint8)
    if arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(p.suffix or ".png", np.ascontiguousarray(arr))
    if not ok:
        raise InputError(f"{p}: cannot encode as {p.suffix}")
    buf.tofile(str(p))
