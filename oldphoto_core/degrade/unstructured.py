"""Unstructured degradation (paper §4.2): noise, Gaussian blur, JPEG, colour jitter, box blur.

Each op is a small pure function on NCHW float images in 0..1 (any device); the random plan
(order, which ops are dropped, their parameters) is drawn separately by
:func:`sample_unstructured`, so it can be logged and replayed by :func:`apply_unstructured`.
Every op clamps its result to [0, 1], as an 8-bit pipeline would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import kornia
import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ._random import bernoulli, choice, randint, torch_generator, uniform
from .config import DegradeConfig

__all__ = ["add_gaussian_noise", "gaussian_blur", "jpeg_compress", "color_jitter", "box_blur",
           "sample_unstructured", "apply_unstructured"]


def _check_nchw(image: Tensor, name: str) -> None:
    if not isinstance(image, Tensor) or image.ndim != 4 or not image.is_floating_point():
        found = (f"{tuple(image.shape)} {image.dtype}" if isinstance(image, Tensor)
                 else type(image).__name__)
        raise InputError(f"{name}: expected a float tensor [B, C, H, W], found {found}")


def add_gaussian_noise(image: Tensor, sigma_255: float, rng: np.random.Generator) -> Tensor:
    """Add Gaussian white noise, independent per pixel and channel.

    The noise is drawn on the CPU from ``rng`` (so CPU and GPU results agree) and moved to the
    image's device.

    Args:
        image: ``[B, C, H, W]`` float in 0..1.
        sigma_255: standard deviation on the 0..255 scale.
        rng: generator the noise is drawn from.

    Returns:
        ``[B, C, H, W]``, clamped to [0, 1].
    """
    _check_nchw(image, "add_gaussian_noise")
    noise = torch.randn(tuple(image.shape), generator=torch_generator(rng))
    noise = noise.to(device=image.device, dtype=image.dtype)
    return (image + noise.mul_(sigma_255 / 255.0)).clamp_(0.0, 1.0)


def gaussian_blur(image: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Gaussian blur with a square ``kernel_size`` kernel (odd) and std ``sigma`` pixels.

    On the CPU OpenCV computes it (about 20x faster than a convolution here), elsewhere
    ``kornia.filters.gaussian_blur2d``; both use the same normalised kernel and reflected
    borders (``dcb|abcd|cba``) and agree to float rounding.

    Args:
        image: ``[B, C, H, W]`` float in 0..1.
        kernel_size: odd, >= 1 (shrunk to fit images smaller than the kernel).
        sigma: std in pixels, > 0.

    Returns:
        ``[B, C, H, W]``, same dtype and device.
    """
    _check_nchw(image, "gaussian_blur")
    k = _fit_kernel(kernel_size, image)
    if k <= 1:
        return image.clone()
    if image.device.type == "cpu":
        return _per_plane(image, lambda p: cv2.GaussianBlur(
            p, (k, k), float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101))
    return kornia.filters.gaussian_blur2d(image, (k, k), (float(sigma), float(sigma)))


def box_blur(image: Tensor, kernel_size: int) -> Tensor:
    """Box (mean) blur with a square ``kernel_size`` kernel (odd): a crude lens defocus.

    OpenCV on the CPU, ``kornia.filters.box_blur`` elsewhere (same result, reflected borders).

    Args:
        image: ``[B, C, H, W]`` float in 0..1.
        kernel_size: odd, >= 1 (shrunk to fit images smaller than the kernel).

    Returns:
        ``[B, C, H, W]``, same dtype and device.
    """
    _check_nchw(image, "box_blur")
    k = _fit_kernel(kernel_size, image)
    if k <= 1:
        return image.clone()
    if image.device.type == "cpu":
        return _per_plane(image, lambda p: cv2.blur(p, (k, k),
                                                    borderType=cv2.BORDER_REFLECT_101))
    return kornia.filters.box_blur(image, (k, k))


def _per_plane(image: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """Apply an OpenCV filter to every ``[H, W]`` plane of a CPU tensor (float32 inside)."""
    src = image.detach().to(torch.float32).contiguous().numpy()
    out = np.empty_like(src)
    for b in range(src.shape[0]):
        for c in range(src.shape[1]):
            out[b, c] = fn(src[b, c])
    return torch.from_numpy(out).to(image.dtype)


def _fit_kernel(kernel_size: int, image: Tensor) -> int:
    """The kernel, shrunk (odd) so that reflect padding fits a tiny image."""
    limit = 2 * (min(image.shape[-2:]) - 1) + 1
    return min(int(kernel_size), limit)


def jpeg_compress(image: Tensor, quality: int) -> Tensor:
    """A real JPEG encode/decode round trip (OpenCV, 4:2:0 chroma) of every batch item.

    Args:
        image: ``[B, C, H, W]`` float in 0..1 with C = 1 (grey JPEG) or 3 (RGB, colour JPEG).
        quality: JPEG quality 1..100.

    Returns:
        ``[B, C, H, W]`` on the input's device and dtype, quantised to multiples of 1/255.

    Raises:
        InputError: C is not 1 or 3, or the encoder fails.
    """
    _check_nchw(image, "jpeg_compress")
    channels = image.shape[1]
    if channels not in (1, 3):
        raise InputError(f"jpeg_compress: expected 1 or 3 channels, found {channels}")
    u8 = (image.detach().float().clamp(0, 1) * 255.0).round_().to(torch.uint8).cpu().numpy()
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    out = np.empty_like(u8)
    for b in range(u8.shape[0]):
        hwc = np.ascontiguousarray(u8[b].transpose(1, 2, 0))
        if channels == 3:
            hwc = cv2.cvtColor(hwc, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", hwc, params)
        if not ok:
            raise InputError(f"jpeg_compress: the JPEG encoder failed at quality {quality}")
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
        if channels == 3:
            out[b] = cv2.cvtColor(dec, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
        else:
            out[b, 0] = dec
    return torch.from_numpy(out).to(device=image.device, dtype=image.dtype) / 255.0


def color_jitter(image: Tensor, shifts_255: Sequence[float]) -> Tensor:
    """Shift each channel by its own constant (the paper's colour jitter).

    Args:
        image: ``[B, C, H, W]`` float in 0..1.
        shifts_255: C shifts on the 0..255 scale.

    Returns:
        ``[B, C, H, W]``, clamped to [0, 1].
    """
    _check_nchw(image, "color_jitter")
    if len(shifts_255) != image.shape[1]:
        raise InputError(f"color_jitter: expected {image.shape[1]} shifts (one per channel), "
                         f"found {len(shifts_255)}")
    shift = torch.tensor([s / 255.0 for s in shifts_255], dtype=image.dtype,
                         device=image.device).view(1, -1, 1, 1)
    return (image + shift).clamp_(0.0, 1.0)


def sample_unstructured(rng: np.random.Generator, config: DegradeConfig,
                        channels: int) -> list[dict[str, Any]]:
    """Draw the random plan of the unstructured ops: order, drops and parameters.

    Every enabled op gets parameters (drawn even when dropped, so the stream stays aligned);
    the list is in application order.

    Args:
        rng: generator of the item's unstructured stream.
        config: the ranges.
        channels: 1 or 3 (the number of colour-jitter shifts).

    Returns:
        One JSON-serialisable dict per enabled op: ``op``, ``applied`` and its parameters.
    """
    ops = config.unstructured_ops
    order = [ops[i] for i in rng.permutation(len(ops))]
    plan = []
    for op in order:
        step: dict[str, Any] = {"op": op, "applied": not bernoulli(rng, config.op_drop_prob)}
        if op == "noise":
            step["sigma_255"] = uniform(rng, config.noise_sigma_255)
        elif op == "gaussian_blur":
            step["kernel_size"] = int(choice(rng, config.gaussian_blur_kernels))
            step["sigma"] = uniform(rng, config.gaussian_blur_sigma)
        elif op == "jpeg":
            step["quality"] = randint(rng, config.jpeg_quality)
        elif op == "color_jitter":
            step["shifts_255"] = [uniform(rng, config.color_jitter_255) for _ in range(channels)]
        elif op == "box_blur":
            step["kernel_size"] = int(choice(rng, config.box_blur_kernels))
        plan.append(step)
    return plan


def apply_unstructured(image: Tensor, plan: Sequence[dict[str, Any]],
                       noise_rng: np.random.Generator) -> Tensor:
    """Apply a plan of :func:`sample_unstructured` (skipping the dropped ops) in its order.

    Args:
        image: ``[B, C, H, W]`` float in 0..1, C = 1 or 3.
        plan: the ops, in order.
        noise_rng: generator of the white noise.

    Returns:
        ``[B, C, H, W]`` in [0, 1].
    """
    out = image
    for step in plan:
        if not step["applied"]:
            continue
        op = step["op"]
        if op == "noise":
            out = add_gaussian_noise(out, step["sigma_255"], noise_rng)
        elif op == "gaussian_blur":
            out = gaussian_blur(out, step["kernel_size"], step["sigma"])
        elif op == "jpeg":
            out = jpeg_compress(out, step["quality"])
        elif op == "color_jitter":
            out = color_jitter(out, step["shifts_255"])
        elif op == "box_blur":
            out = box_blur(out, step["kernel_size"])
        else:
            raise InputError(f"apply_unstructured: unknown op {op!r}; expected one of "
                             "noise, gaussian_blur, jpeg, color_jitter, box_blur")
    return out
