"""How our network calls do their float32 arithmetic: the ``precision`` setting.

* ``"exact"`` (default): float32 throughout. On GPUs TF32 is turned off: PyTorch lets cuDNN
  use TF32 (10-bit mantissa) by default on Ampere and newer, and measured on an H100 with the
  parity kit (``benchmarks/gpu_precision.py``) that moves every network of the paper beyond its
  parity tolerance (``mapping_scratch`` by 0.1 where 6e-4 is allowed; bf16/fp16 much further),
  while strict fp32 stays within it. On CPUs, wide 3x3 convolutions use Winograd's F(4x4, 3x3)
  (:mod:`oldphoto_core.runtime.winograd`): an exact algorithm whose float32 rounding differs
  from the direct one at the 1e-6 level, and which does about 4x fewer multiply-adds.
* ``"direct"``: as ``"exact"``, with every convolution and normalisation computed by
  PyTorch's own layers (direct convolutions, ``F.instance_norm``, separate padding), for
  bit-for-bit comparisons with the reference implementation.
* ``"tf32"``: TF32 allowed on GPUs, for speed over fidelity.

The setting lives in a context variable (:func:`use_precision`), and :func:`network_math`
applies it around each network call, restoring the caller's global flags afterwards (ComfyUI and
other node packs share them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from .winograd import workspace

__all__ = ["use_precision", "network_math", "fast_kernels", "PRECISIONS"]

PRECISIONS = ("exact", "direct", "tf32")
_PRECISION: ContextVar[str] = ContextVar("oldphoto_precision", default="exact")


@contextmanager
def use_precision(precision: str) -> Iterator[None]:
    """Within the block, our network calls use ``precision`` (one of :data:`PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    token = _PRECISION.set(precision)
    try:
        yield
    finally:
        _PRECISION.reset(token)


def fast_kernels() -> bool:
    """Whether layers may use our fast exact algorithms instead of PyTorch's own layers:
    Winograd convolutions, and residual blocks computed in place with folded padding.

    Only for inference: with gradients enabled (training) PyTorch's layers and their backward
    passes are used.
    """
    return _PRECISION.get() != "direct" and not torch.is_grad_enabled()


@contextmanager
def network_math() -> Iterator[None]:
    """Inference mode with the TF32 flags set for the current precision, restored after, and
    a :func:`~oldphoto_core.runtime.winograd.workspace` for the convolutions of the call."""
    allow = _PRECISION.get() == "tf32"
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cuda.matmul.allow_tf32 = allow
    except RuntimeError:  # the caller uses the newer fp32_precision API: leave it to them
        saved = None
    try:
        with torch.inference_mode(), workspace():
            yield
    finally:
        if saved is not None:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
