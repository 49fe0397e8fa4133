"""Scratch detection stage (Global/detection.py of the reference, ``--input_size full_size``).

The U-Net runs on the luma of the photo resized (bilinear, no antialias) so that its short side
is 256 px - the scale it was trained at - and its probability map is brought back to the input
size with nearest-neighbour sampling and thresholded (0.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..io.resample import is_8bit_valued, round_to_multiple
from ..loading import ModelDescriptor
from ..runtime.checks import check_images
from ..runtime.numerics import network_math

__all__ = ["detect_scratches", "scratch_probability", "detector_input_size", "luma",
           "dilate_mask"]

DETECTOR_SHORT_SIDE = 256
DEFAULT_THRESHOLD = 0.4


def detector_input_size(h: int, w: int, short_side: int = DETECTOR_SHORT_SIDE) -> tuple[int, int]:
    """Short side -> ``short_side``, long side scaled and rounded to a multiple of 16."""
    if h < w:
        return short_side, round_to_multiple(w / h * short_side, 16)
    return round_to_multiple(h / w * short_side, 16), short_side


def luma(image: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``[B, 1, H, W]`` of RGB(A) or gray images in 0..1.

    8-bit-valued photos use PIL's fixed-point formula (what ``convert("L")`` gives the
    reference); others the same weights in floating point. Decided per batch item, so that a
    photo's result never depends on the others in its batch.
    """
    if image.shape[1] == 1:
        return image
    return torch.cat([_luma_one(item[None, :3]) for item in image])


def _luma_one(rgb: torch.Tensor) -> torch.Tensor:
    if is_8bit_valued(rgb):
        v = torch.round(rgb.double() * 255).long()
        y = (v[:, 0] * 19595 + v[:, 1] * 38470 + v[:, 2] * 7471 + 0x8000) >> 16
        return (y.to(rgb.dtype) / 255.0)[:, None]
    wts = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    return (rgb * wts[:, None, None]).sum(dim=1, keepdim=True)


def scratch_probability(image: torch.Tensor, detector: ModelDescriptor, *,
                        short_side: int = DETECTOR_SHORT_SIDE) -> torch.Tensor:
    """Scratch probability ``[B, 1, h, w]`` at the detector's working size (short side 256)."""
    image = check_images(image)
    gray = luma(image) * 2 - 1
    size = detector_input_size(*image.shape[-2:], short_side)
    net = detector.model
    x = F.interpolate(gray, size, mode="bilinear", align_corners=False)
    x = x.to(device=detector.device, dtype=detector.dtype)
    with network_math():
        return torch.sigmoid(net(x)).to(device=image.device, dtype=torch.float32)


def dilate_mask(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Binary dilation with a 3x3 square, ``iterations`` times (``cv2.dilate`` semantics)."""
    for _ in range(iterations):
        mask = F.max_pool2d(mask, 3, stride=1, padding=1)
    return mask


def detect_scratches(image: torch.Tensor, detector: ModelDescriptor, *,
                     threshold: float = DEFAULT_THRESHOLD, dilation: int = 0) -> torch.Tensor:
    """Scratch mask of a batch of photos.

    Args:
        image: ``[B, C, H, W]`` float 0..1 (C = 1, 3 or 4; alpha is ignored).
        detector: the scratch U-Net (:func:`~oldphoto_core.load_model` with
            ``expect="scratch_detector"``).
        threshold: probability at or above which a pixel is a scratch (0.4 as the reference).
        dilation: extra 3x3 dilation iterations (0 = none, as the reference's detector).

    Returns:
        ``[B, 1, H, W]`` float mask in {0, 1}, 1 = scratch, at the input size.
    """
    prob = scratch_probability(image, detector)
    prob = F.interpolate(prob, image.shape[-2:], mode="nearest")
    mask = (prob >= threshold).float()
    return dilate_mask(mask, dilation) if dilation else mask
