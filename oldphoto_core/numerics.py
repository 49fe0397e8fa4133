"""Float32 that stays float32 on GPUs, unless the caller opts into TF32.

PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default on Ampere and newer GPUs.
Measured on an H100 with the parity kit (``benchmarks/gpu_precision.py``), TF32 moves every
network of the paper beyond its parity tolerance (e.g. ``mapping_scratch`` by 0.1 where 6e-4 is
allowed) and bf16/fp16 much further, while strict fp32 stays within it. Our network calls
therefore run with TF32 off by default, and restore the caller's global flags afterwards (ComfyUI
and other node packs share them). :func:`fast_math` opts in, for speed over fidelity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

__all__ = ["fast_math", "network_math", "PRECISIONS"]

PRECISIONS = ("exact", "tf32")
_ALLOW_TF32: ContextVar[bool] = ContextVar("oldphoto_allow_tf32", default=False)


@contextmanager
def fast_math(precision: str = "tf32") -> Iterator[None]:
    """Within the block, our network calls use ``precision`` (``"exact"`` or ``"tf32"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    token = _ALLOW_TF32.set(precision == "tf32")
    try:
        yield
    finally:
        _ALLOW_TF32.reset(token)


@contextmanager
def network_math() -> Iterator[None]:
    """Inference mode with the TF32 flags set for the current precision, restored after."""
    allow = _ALLOW_TF32.get()
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cuda.matmul.allow_tf32 = allow
    except RuntimeError:  # the caller uses the newer fp32_precision API: leave it to them
        saved = None
    try:
        with torch.inference_mode():
            yield
    finally:
        if saved is not None:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
