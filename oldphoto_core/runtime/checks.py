"""Typed input checks shared by the stages (kornia-style guard clauses with clear messages)."""

from __future__ import annotations

import math

import torch

from ..errors import InputError

__all__ = ["check_images", "check_mask", "MIN_SIDE", "RANGE_SLACK"]

#: Smallest image side the networks can process (reflection padding, 4x/16x downsampling).
MIN_SIDE = 16
#: How far outside [0, 1] values may stray (round-off of a previous decoder) before we refuse.
RANGE_SLACK = 1e-3


def check_images(x: object, *, name: str = "image", channels: tuple[int, ...] = (1, 3, 4),
                 min_side: int = MIN_SIDE, slack: float = RANGE_SLACK) -> torch.Tensor:
    """Check an NCHW float image batch in [0, 1]; returns it unchanged.

    The one input check of every stage (restoration, faces, degradation), so that a user gets
    the same words for the same mistake wherever it is made.

    Args:
        x: the batch.
        name: how messages call it.
        channels: accepted channel counts (gray 1, RGB 3, RGBA 4).
        min_side: smallest accepted height and width.
        slack: how far outside [0, 1] values may stray (decoder round-off).

    Raises:
        InputError: not a tensor, not rank 4, integer dtype, wrong channel count, empty batch,
            a side below ``min_side``, NaN/inf, or values outside [0, 1].
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor [B, C, H, W], found "
                         f"{type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{name}: expected a 4-D tensor [B, C, H, W] (rank 4, NCHW), found "
                         f"shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a floating-point image in [0, 1], found {x.dtype}; "
                         "divide 8-bit data by 255 and 16-bit data by 65535 first")
    if c not in channels:
        names = {1: "1 (grey)", 3: "3 (RGB)", 4: "4 (RGBA)"}
        wanted = [names.get(k, str(k)) for k in channels]
        listed = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " or " + wanted[-1]
        raise InputError(f"{name}: expected {listed} channels, found {c} (shape "
                         f"{tuple(x.shape)}; the layout must be NCHW - ComfyUI's IMAGE is "
                         "[B, H, W, C] and must be permuted)")
    if b == 0:
        raise InputError(f"{name}: expected at least one image, found an empty batch "
                         f"{tuple(x.shape)}")
    if min(h, w) < min_side:
        raise InputError(f"{name}: expected height and width >= {min_side}, found {h}x{w} "
                         "(too small)")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{name}: expected values in [0, 1], found NaN or infinite values")
    if lo < -slack or hi > 1 + slack:
        raise InputError(f"{name}: expected values in [0, 1], found [{lo:.4g}, {hi:.4g}]")
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
