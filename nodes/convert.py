"""Layout conversion between ComfyUI tensors and the NCHW tensors of ``oldphoto_core``.

ComfyUI passes ``IMAGE`` as ``[B, H, W, C]`` and ``MASK`` as ``[B, H, W]`` (float 0..1); the core
takes ``[B, C, H, W]`` and ``[B, 1, H, W]``. Inputs are never written to: conversions return views
or new tensors.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from oldphoto_core.errors import InputError

from . import comfy_compat as compat

log = logging.getLogger("oldphoto")

__all__ = ["fit_mask", "image_to_nchw", "mask_to_nchw", "nchw_to_image", "nchw_to_mask",
           "to_rgb"]


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {list(x.shape)} ({x.dtype})"
    return f"a {type(x).__name__}"


def image_to_nchw(image: object, *, name: str = "image") -> torch.Tensor:
    """``IMAGE [B, H, W, C]`` -> ``[B, C, H, W]`` float32 (a view when already float32).

    Raises:
        InputError: not a 4-D tensor with 1, 3 or 4 channels, or an empty batch.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise InputError(f"{name}: expected a ComfyUI IMAGE [batch, height, width, channels], "
                         f"got {_describe(image)}")
    if image.shape[-1] not in (1, 3, 4):
        raise InputError(f"{name}: expected 1, 3 or 4 channels in the last dimension, got "
                         f"shape {list(image.shape)}")
    if image.shape[0] == 0:
        raise InputError(f"{name}: the batch is empty")
    return image.movedim(-1, 1).to(torch.float32)


def nchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``IMAGE [B, H, W, C]`` float32 in 0..1 on ComfyUI's intermediate
    device."""
    return x.detach().to(device=compat.intermediate_device(), dtype=torch.float32) \
        .clamp(0, 1).movedim(1, -1).contiguous()


def mask_to_nchw(mask: object, *, name: str = "mask") -> torch.Tensor:
    """``MASK [B, H, W]`` (or ``[H, W]``, ``[B, 1, H, W]``) -> ``[B, 1, H, W]`` float32."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3, 4) or \
            (mask.ndim == 4 and mask.shape[1] != 1):
        raise InputError(f"{name}: expected a ComfyUI MASK [batch, height, width], got "
                         f"{_describe(mask)}")
    m = mask.to(torch.float32)
    if m.ndim == 2:
        m = m[None]
    return m[:, None] if m.ndim == 3 else m


def nchw_to_mask(m: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` -> ``MASK [B, H, W]`` float32 on the intermediate device."""
    return m.detach()[:, 0].to(device=compat.intermediate_device(), dtype=torch.float32) \
        .clamp(0, 1).contiguous()


def fit_mask(mask: torch.Tensor, batch: int, size: tuple[int, int], *, node: str,
             target: str = "the image") -> torch.Tensor:
    """Bring a ``[B', 1, h, w]`` mask to ``[batch, 1, *size]``.

    A mask of another size is resized (nearest neighbour, so a binary mask stays binary) with a
    warning; a single mask is used for every item of the batch.

    Raises:
        InputError: the mask batch is neither 1 nor ``batch``.
    """
    if mask.shape[0] not in (1, batch):
        raise InputError(f"{node}: the mask batch has {mask.shape[0]} items but {target} has "
                         f"{batch}; give one mask per image, or a single mask for all")
    size = (int(size[0]), int(size[1]))
    if tuple(mask.shape[-2:]) != size:
        log.warning("%s: mask size %dx%d differs from %s (%dx%d); resizing it "
                    "(nearest neighbour)", node, mask.shape[-1], mask.shape[-2], target,
                    size[1], size[0])
        mask = F.interpolate(mask, size=size, mode="nearest")
    if mask.shape[0] != batch:
        mask = mask.expand(batch, -1, -1, -1)
    return mask


def to_rgb(x: torch.Tensor, *, node: str) -> torch.Tensor:
    """``[B, C, H, W]`` with C in 1, 3, 4 -> RGB (gray replicated, alpha dropped with a note)."""
    c = x.shape[1]
    if c == 3:
        return x
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    log.info("%s: the image has an alpha channel; it is ignored", node)
    return x[:, :3]
