"""Input checks and layout/precision conversions shared by the face stages."""

from __future__ import annotations

import numpy as np
import torch

from ..runtime.checks import check_images as _check_images

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL "L"


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """The engine's image check (:func:`oldphoto_core.runtime.checks.check_images`), any size
    accepted: a face stage can run on crops smaller than the networks' minimum."""
    return _check_images(images, name=name, min_side=1)


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
