"""Pixels: read a photo as RGB, bring it to a croppable size, cut a random crop.

All functions work on CPU tensors ``[C, H, W]`` float32 in [0, 1] and take their randomness
from an explicit ``numpy.random.Generator`` (never a global one), so a sample is a pure function
of its seed and the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto_core.degrade import MIN_SIZE
from oldphoto_core.io.images import read_image

__all__ = ["CropBox", "load_rgb", "load_gray", "fit_for_crop", "random_box", "apply_box",
           "to_signed", "resize_square", "resize_mask", "shrink_mask", "region_side"]


def load_rgb(path: str) -> torch.Tensor:
    """``[3, H, W]`` float32 in [0, 1]: gray is replicated, alpha dropped (EXIF applied).

    Raises:
        oldphoto_core.errors.InputError: the file cannot be decoded.
    """
    img, _ = read_image(path)
    x = img[0]
    if x.shape[0] == 1:
        return x.expand(3, -1, -1).contiguous()
    return x[:3].contiguous()


def load_gray(path: str) -> torch.Tensor:
    """``[1, H, W]`` float32 in [0, 1]: the first channel of a mask file (or its luma)."""
    img, _ = read_image(path)
    x = img[0]
    if x.shape[0] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (x[:3] * w).sum(dim=0, keepdim=True)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    antialias = mode in ("bilinear", "bicubic")
    y = F.interpolate(x[None], size=size, mode=mode, antialias=antialias,
                      **({} if mode == "nearest" else {"align_corners": False}))[0]
    return y.clamp_(0.0, 1.0)


def fit_for_crop(x: torch.Tensor, crop: int, max_side: int = 0,
                 mode: str = "bicubic") -> torch.Tensor:
    """Downscale so the long side is at most ``max_side`` (when > 0), then upscale so the short
    side is at least ``crop``; the aspect ratio is kept.

    Shape: ``[C, H, W]`` -> ``[C, H', W']`` with ``min(H', W') >= crop``.
    """
    h, w = x.shape[-2:]
    scale = 1.0
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
    if min(h, w) * scale < crop:
        scale = crop / min(h, w)
    if scale == 1.0:
        return x
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    return _resize(x, size, mode)


def resize_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """Resize a ``[1, H, W]`` mask to ``size = (h, w)`` with nearest sampling (stays binary)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[None], size=tuple(size), mode="nearest")[0]


def shrink_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """Resize a ``[B, 1, H, W]`` mask to ``size = (h, w)`` by area: a pixel is damaged when at
    least half its area was (what a detector shown the resized photo can still see).

    Returns the mask in ``mask``'s dtype, values 0 or 1."""
    return (F.interpolate(mask, size=tuple(size), mode="area") >= 0.5).to(mask.dtype)


def region_side(crop: int, short: int, seen_at: int) -> int:
    """Side of the photo region that becomes ``crop`` pixels once the whole photo (short side
    ``short``) is brought to a short side of ``seen_at``: ``crop x short / seen_at``, at most
    the photo's short side and at least ``degrade``'s smallest size (16)."""
    return min(short, max(MIN_SIZE, round(crop * short / seen_at)))


def resize_square(x: torch.Tensor, side: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize ``[C, H, W]`` to ``[C, side, side]`` (antialiased when shrinking)."""
    return _resize(x, (side, side), mode)


@dataclass(frozen=True)
class CropBox:
    """Where a crop sits and whether it is mirrored (shared by an image and its mask)."""

    top: int
    left: int
    size: int
    flip: bool


def random_box(height: int, width: int, crop: int, rng: np.random.Generator,
               flip: bool = True) -> CropBox:
    """A uniformly placed ``crop`` x ``crop`` box, mirrored with probability 1/2."""
    top = int(rng.integers(0, height - crop + 1))
    left = int(rng.integers(0, width - crop + 1))
    mirrored = bool(rng.random() < 0.5) if flip else False
    return CropBox(top, left, crop, mirrored)


def apply_box(x: torch.Tensor, box: CropBox) -> torch.Tensor:
    """Cut ``box`` out of ``[C, H, W]`` (a contiguous copy)."""
    y = x[:, box.top:box.top + box.size, box.left:box.left + box.size]
    if box.flip:
        y = y.flip(-1)
    return y.contiguous()


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the networks' input range."""
    return x * 2.0 - 1.0
