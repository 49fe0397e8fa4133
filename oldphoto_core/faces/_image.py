"""Input checks and layout/precision conversions shared by the face stages."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

_RANGE_SLACK = 1e-3  # values this far outside [0, 1] are tolerated (decoder round-off)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL "L"


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """Validate an NCHW float batch in [0, 1] with 1 (gray), 3 (RGB) or 4 (RGBA) channels.

    Raises:
        InputError: not a tensor, wrong rank, channels, dtype, empty, non-finite or out of range.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor [B, C, H, W], got "
                         f"{type(images).__name__}")
    if images.ndim != 4:
        raise InputError(f"{name}: expected rank 4 [B, C, H, W] (NCHW), got shape "
                         f"{list(images.shape)}")
    b, c, h, w = images.shape
    if c not in (1, 3, 4):
        raise InputError(f"{name}: expected 1, 3 or 4 channels (gray, RGB, RGBA) in dim 1, got "
                         f"{c} (shape {list(images.shape)}; ComfyUI IMAGE is [B, H, W, C] and "
                         "must be permuted)")
    if b == 0 or h == 0 or w == 0:
        raise InputError(f"{name}: empty batch or image, shape {list(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"{name}: expected a float tensor in [0, 1], got {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name}: contains NaN or infinite values")
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise InputError(f"{name}: values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return images


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` view: gray replicated, alpha dropped."""
    c = images.shape[1]
    if c == 1:
        return images.expand(-1, 3, -1, -1)
    return images[:, :3]


def quantize(images: torch.Tensor) -> torch.Tensor:
    """8-bit levels as torchvision ``save_image`` writes them: ``floor(255 v + 0.5)``, uint8."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def rgb_uint8_hwc(images: torch.Tensor, index: int) -> np.ndarray:
    """Item ``index`` as a contiguous ``[H, W, 3]`` uint8 RGB array for the detectors."""
    q = quantize(to_rgb(images[index:index + 1])[0])
    return np.ascontiguousarray(q.permute(1, 2, 0).cpu().numpy())


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` -> ``[..., 1, H, W]`` ITU-R 601 luma."""
    r, g, b = rgb.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)
