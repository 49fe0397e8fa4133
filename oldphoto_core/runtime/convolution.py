"""Which algorithm computes a convolution: Winograd's F(4x4, 3x3) or PyTorch's direct kernels.

The networks' 3x3 convolutions of 256-1024 channels dominate the restoration's time on CPUs.
:func:`conv2d` computes them by Winograd
(:func:`oldphoto_core.runtime.winograd.winograd_conv3x3`) where that is applicable and
measured faster, by ``F.conv2d`` otherwise; both back ends of the stack walker and the
networks' :class:`~oldphoto_core.arch.conv.Conv2d` modules call it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .numerics import fast_kernels
from .winograd import PADDING_MODES, winograd_conv3x3

__all__ = ["conv2d", "winograd_pays_off", "WINOGRAD_MIN_CHANNELS",
           "WINOGRAD_MIN_CHANNEL_PRODUCT", "WINOGRAD_MIN_PIXELS"]

# Where Winograd beats oneDNN's direct convolution, measured on a 2-core AVX2 CPU (ratios of
# direct to Winograd time, reflect or zero padding, float32):
#   512->512 at 124x156: 1.85   512->256: 1.7   128->256: 1.2-1.5   256->128: 1.15
#   128->128 at 128x160: 0.83   128->64: 0.92   64->64: 0.56
#   1024->512 at 32x40: 1.56    512->512 at 32x40: 1.2    at 24x32: 1.0    at 16x20: 0.7
# The input and output transforms grow with Cin + Cout and the products with Cin * Cout, so
# narrow layers lose; on small maps the weight transform (36 values per channel pair, once per
# call) costs more than the products save.
#: Both channel counts at least this ...
WINOGRAD_MIN_CHANNELS = 128
#: ... and their product at least this (256 x 128) ...
WINOGRAD_MIN_CHANNEL_PRODUCT = 256 * 128
#: ... and at least this many output pixels.
WINOGRAD_MIN_PIXELS = 1024


def winograd_pays_off(in_channels: int, out_channels: int, out_pixels: int) -> bool:
    """Whether a 3x3 convolution of this size runs faster by Winograd (CPU, float32)."""
    return (min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS
            and in_channels * out_channels >= WINOGRAD_MIN_CHANNEL_PRODUCT
            and out_pixels >= WINOGRAD_MIN_PIXELS)


def _winograd_applies(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                      padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and tuple(weight.shape[2:]) == (3, 3) and groups == 1
            and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and padding[0] == padding[1]
            and winograd_pays_off(weight.shape[1], weight.shape[0],
                                  (x.shape[-2] + 2 * padding[0] - 2)
                                  * (x.shape[-1] + 2 * padding[1] - 2))
            and fast_kernels())


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
           dilation: int | tuple[int, int] = 1, groups: int = 1,
           padding_mode: str = "zeros", *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d`` with integer padding, by Winograd where that is exact and faster.

    Winograd is used on CPU float32 inputs for 3x3, stride-1, undilated, ungrouped kernels
    where :func:`winograd_pays_off`, in inference, unless the precision is ``"direct"``
    (:mod:`oldphoto_core.runtime.numerics`).

    ``padding_mode``: ``"zeros"`` (as ``F.conv2d``) or ``"reflect"``, which equals
    ``nn.ReflectionPad2d(padding)`` followed by an unpadded convolution - the pix2pixHD blocks'
    pattern - without materialising the padded map on the Winograd path.

    ``out``: a buffer the Winograd path may write the result into (it may alias ``x``, see
    :func:`~oldphoto_core.winograd.winograd_conv3x3`); other paths return a fresh tensor, so
    callers must use the returned tensor.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if _winograd_applies(x, weight, stride, padding, dilation, groups):
        return winograd_conv3x3(x, weight, bias, padding[0], padding_mode, out=out)
    if padding_mode == "reflect" and any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), mode="reflect")
        padding = (0, 0)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
