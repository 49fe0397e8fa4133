"""Resizing that reproduces the reference's PIL resampling, and its size-rounding rules.

The reference resizes 8-bit PIL images (bilinear for the quality mode's multiple-of-4 rule,
bicubic for the detector's multiple-of-16 rule). PIL filters 8-bit images in two separable passes
with an 8-bit intermediate, so a float implementation differs by one level on a good share of
pixels. We therefore resize with PIL itself: channel by channel in 8-bit mode when the data is
exactly 8-bit (bit-identical to the reference), in 32-bit float mode otherwise (16-bit scans and
float inputs keep their precision).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["pil_resize", "round_to_multiple", "is_8bit_valued"]

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST,
            "lanczos": Image.LANCZOS}


def round_to_multiple(value: float, multiple: int) -> int:
    """``int(round(value / multiple) * multiple)`` with Python's round-half-to-even, as the
    reference computes target sizes (e.g. 450 px -> 448, not 452, for multiple 4)."""
    return int(round(value / multiple) * multiple)


#: Elements checked at a time by :func:`is_8bit_valued` (4 MiB of float32 per temporary).
_CHECK_CHUNK = 1 << 20


def is_8bit_valued(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` (0..1) is exactly ``k / 255`` for an integer ``k``.

    Checked chunk by chunk in float32, stopping at the first chunk that is not, so a 144 MP scan
    costs no full-size temporary. float32 suffices: ``k / 255`` is stored to a relative 2**-24
    and the product by 255 adds another rounding, so an 8-bit value lands within
    ``2 * 255 * 2**-24 < 3.1e-5`` of ``k``, inside the 1e-4 margin.
    """
    flat = x.detach().reshape(-1)
    for start in range(0, flat.numel(), _CHECK_CHUNK):
        scaled = flat[start:start + _CHECK_CHUNK].float() * 255.0
        if not bool(((scaled - scaled.round()).abs_() < 1e-4).all()):
            return False
    return True


def pil_resize(x: torch.Tensor, size: tuple[int, int], method: str = "bicubic") -> torch.Tensor:
    """Resize ``[B, C, H, W]`` float 0..1 images to ``size = (h, w)`` exactly as PIL does.

    8-bit-valued photos go through PIL's 8-bit path (identical to resizing the reference's uint8
    PIL image); anything else through PIL's float path (no quantisation). The choice is made per
    batch item, so a photo's result never depends on the others in its batch. The result has the
    input's dtype and device; 8-bit inputs give 8-bit-valued outputs.
    """
    if x.ndim != 4:
        raise ValueError(f"expected [B, C, H, W], got shape {tuple(x.shape)}")
    h, w = size
    if (h, w) == tuple(x.shape[-2:]):
        return x
    filt = _FILTERS[method]
    arr = x.detach().float().cpu().numpy()
    out = np.empty((*arr.shape[:2], h, w), dtype=np.float32)
    for b in range(arr.shape[0]):
        eight_bit = is_8bit_valued(x[b])  # per photo: a batch item never changes another's path
        for c in range(arr.shape[1]):
            if eight_bit:
                img = Image.fromarray(np.rint(arr[b, c] * 255).astype(np.uint8), "L")
                out[b, c] = np.asarray(img.resize((w, h), filt), dtype=np.float32) / 255.0
            else:
                img = Image.fromarray(arr[b, c], "F")
                out[b, c] = np.asarray(img.resize((w, h), filt))
    return torch.from_numpy(out).clamp_(0, 1).to(device=x.device, dtype=x.dtype)
