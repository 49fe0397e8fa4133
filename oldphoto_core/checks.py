"""Typed input checks shared by the stages (kornia-style guard clauses with clear messages)."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["check_images", "check_mask", "MIN_SIDE"]

#: Smallest image side the networks can process (reflection padding, 4x/16x downsampling).
MIN_SIDE = 16


def check_images(x: object, *, name: str = "image", channels: tuple[int, ...] = (1, 3, 4),
                 min_side: int = MIN_SIDE) -> torch.Tensor:
    """Check an NCHW float image batch in [0, 1]; returns it unchanged.

    Raises:
        InputError: not a tensor, wrong rank, empty batch, channel count not in ``channels``,
            integer dtype, NaN/inf, values outside [0, 1], or a side below ``min_side``.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{name}: expected shape [B, C, H, W], got {tuple(x.shape)}")
    b, c, h, w = x.shape
    if b == 0:
        raise InputError(f"{name}: the batch is empty (shape {tuple(x.shape)})")
    if c not in channels:
        raise InputError(f"{name}: expected {' or '.join(map(str, channels))} channels "
                         f"(gray, RGB, RGBA), got {c}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected float values in [0, 1], got dtype {x.dtype}; "
                         "divide 8-bit data by 255 and 16-bit data by 65535 first")
    if min(h, w) < min_side:
        raise InputError(f"{name}: {h}x{w} is too small; both sides must be at least "
                         f"{min_side} px")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name}: contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise InputError(f"{name}: values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return x


def check_mask(mask: object, *, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Check a ``[B, 1, H, W]`` (or ``[B, H, W]``) float mask matching ``like``'s batch and size.

    Returns the mask as ``[B, 1, H, W]`` float on ``like``'s device.
    """
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    m = mask[:, None] if mask.ndim == 3 else mask
    if m.ndim != 4 or m.shape[1] != 1:
        raise InputError(f"{name}: expected [B, 1, H, W] or [B, H, W], got {tuple(mask.shape)}")
    if m.shape[0] != like.shape[0] and m.shape[0] != 1:
        raise InputError(f"{name}: batch of {m.shape[0]} does not match the image batch of "
                         f"{like.shape[0]}")
    if tuple(m.shape[-2:]) != tuple(like.shape[-2:]):
        raise InputError(f"{name}: size {tuple(m.shape[-2:])} differs from the image size "
                         f"{tuple(like.shape[-2:])}")
    m = m.to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32)
    if m.shape[0] != like.shape[0]:
        m = m.expand(like.shape[0], -1, -1, -1)
    return m
