"""Compositing of the structured damage and the global "old" look, on NCHW tensors in 0..1.

Blend modes follow the paper (screen, lighten-only, addition, at an opacity); holes reveal the
paper; the defect mask is the visible change that the structured layer caused. Vignette, sepia,
fading, film grain and a soft blur give the photo its age but are not defects.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ._random import torch_generator
from .config import BLEND_MODES
from .unstructured import gaussian_blur

__all__ = ["blend_texture", "composite_paper", "defect_mask", "vignette", "sepia", "fade",
           "film_grain", "soft_blur", "SEPIA_MATRIX"]

#: The classic sepia toning matrix (rows: output R, G, B; columns: input R, G, B).
SEPIA_MATRIX = ((0.393, 0.769, 0.189), (0.349, 0.686, 0.168), (0.272, 0.534, 0.131))


def blend_texture(base: Tensor, texture: Tensor, colour: Tensor, mode: str,
                  opacity: float) -> Tensor:
    """Blend a damage texture over a photo.

    With ``t = texture * colour``: screen ``1 - (1 - b)(1 - t)``, lighten ``max(b, t)``,
    addition ``min(b + t, 1)``; the result is mixed with ``base`` at ``opacity``.

    Args:
        base: ``[B, C, H, W]`` in 0..1.
        texture: ``[B, 1, H, W]`` in 0..1 (0 = nothing drawn).
        colour: ``[C]`` colour of the damage (e.g. the paper tone).
        mode: one of ``screen``, ``lighten``, ``addition``.
        opacity: 0..1.

    Returns:
        ``[B, C, H, W]`` in 0..1; equal to ``base`` wherever ``texture`` is 0.
    """
    t = texture * colour.to(base).view(1, -1, 1, 1)
    if mode == "screen":
        blended = 1.0 - (1.0 - base) * (1.0 - t)
    elif mode == "lighten":
        blended = torch.maximum(base, t)
    elif mode == "addition":
        blended = (base + t).clamp_(max=1.0)
    else:
        raise InputError(f"blend_texture: expected a mode in {BLEND_MODES}, found {mode!r}")
    return base + opacity * (blended - base)


def composite_paper(base: Tensor, alpha: Tensor, paper: Tensor) -> Tensor:
    """Reveal ``paper`` ``[B, C, H, W]`` through holes of opacity ``alpha`` ``[B, 1, H, W]``."""
    return base + alpha * (paper - base)


def defect_mask(before: Tensor, after: Tensor, drawn: Tensor, threshold: float) -> Tensor:
    """The ground-truth mask of structured damage, as visible after blending.

    A pixel is damaged when some channel changed by more than ``threshold`` (0..1 scale)
    between ``before`` and ``after`` the structured layer, and a texture or hole was drawn
    there (``drawn``).

    Args:
        before, after: ``[B, C, H, W]``.
        drawn: ``[B, 1, H, W]`` bool.
        threshold: visible change, 0..1.

    Returns:
        ``[B, 1, H, W]`` bool.
    """
    change = (after - before).abs().amax(dim=1, keepdim=True)
    return (change > threshold) & drawn


def _radius2(height: int, width: int, device: torch.device) -> Tensor:
    """Squared normalised distance from the centre, 1 at the corners: ``[1, 1, H, W]``."""
    y = torch.linspace(-1.0, 1.0, height, device=device).view(-1, 1)
    x = torch.linspace(-1.0, 1.0, width, device=device).view(1, -1)
    return ((x * x + y * y) / 2.0).view(1, 1, height, width)


def vignette(image: Tensor, strength: float) -> Tensor:
    """Darken towards the corners: ``image * (1 - strength * r**3)``, r = 1 at the corners.

    Args:
        image: ``[B, C, H, W]`` in 0..1.
        strength: darkening at the corners, 0..1.
    """
    r2 = _radius2(image.shape[-2], image.shape[-1], image.device).to(image.dtype)
    return image * (1.0 - strength * r2.pow(1.5))


def sepia(image: Tensor, strength: float) -> Tensor:
    """Mix an RGB image with its sepia toning (:data:`SEPIA_MATRIX`) at ``strength``.

    Args:
        image: ``[B, 3, H, W]`` in 0..1.

    Raises:
        InputError: the image is not RGB.
    """
    if image.shape[1] != 3:
        raise InputError(f"sepia: expected 3 channels (RGB), found {image.shape[1]}")
    m = torch.tensor(SEPIA_MATRIX, dtype=image.dtype, device=image.device)
    toned = torch.einsum("oc,bchw->bohw", m, image).clamp_(0.0, 1.0)
    return image + strength * (toned - image)


def fade(image: Tensor, strength: Tensor | float, tone: Tensor) -> Tensor:
    """Fade towards the paper ``tone`` ``[C]``: lower contrast, lifted blacks, yellowing.

    Args:
        image: ``[B, C, H, W]`` in 0..1.
        strength: a float or a ``[B, 1, H, W]`` field (uneven fading), 0..1.
        tone: ``[C]`` colour the dyes fade to.
    """
    return image + strength * (tone.to(image).view(1, -1, 1, 1) - image)


def film_grain(image: Tensor, sigma_255: float, size: float, rng: np.random.Generator) -> Tensor:
    """Add monochrome film grain: white noise blurred by ``size`` px, std ``sigma_255``/255.

    The noise is drawn on the CPU from ``rng`` (blurred there) and moved to the image's device.

    Args:
        image: ``[B, C, H, W]`` in 0..1.
        sigma_255: grain std on the 0..255 scale.
        size: grain blur in pixels (0 = per-pixel grain).
        rng: generator of the grain.

    Returns:
        ``[B, C, H, W]`` clamped to [0, 1].
    """
    b, _, h, w = image.shape
    grain = torch.randn((b, 1, h, w), generator=torch_generator(rng))
    if size > 0.3:
        grain = soft_blur(grain, size)
        grain /= grain.std(dim=(1, 2, 3), keepdim=True).clamp_(min=1e-6)
    grain = grain.to(device=image.device, dtype=image.dtype).mul_(sigma_255 / 255.0)
    return (image + grain).clamp_(0.0, 1.0)


def soft_blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of std ``sigma`` px with a kernel covering ±3 sigma."""
    return gaussian_blur(image, 2 * math.ceil(3 * sigma) + 1, sigma)
