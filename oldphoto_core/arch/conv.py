"""``Conv2d``: PyTorch's convolution module with a faster exact path for wide 3x3 kernels.

The networks' 3x3 convolutions of 256-1024 channels dominate the restoration's time on CPUs.
This subclass keeps ``nn.Conv2d``'s parameters and state-dict keys (the checkpoint contract is
untouched) and only changes how the forward pass is computed: by Winograd's F(4x4, 3x3)
(:func:`oldphoto_core.winograd.winograd_conv3x3`) when :func:`conv2d` finds it applicable and
faster, by ``F.conv2d`` otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import fast_convolutions
from ..winograd import winograd_conv3x3

__all__ = ["Conv2d", "conv2d", "WINOGRAD_MIN_CHANNELS", "WINOGRAD_MIN_PIXELS"]

#: Winograd pays off from here (measured on a 2-core AVX2 CPU at 124x156: 512 channels 1.6x,
#: 256 channels 1.4x faster; at 128 channels it merely breaks even).
WINOGRAD_MIN_CHANNELS = 256
#: ... and on maps of at least this many output pixels: the weight transform (36 values per
#: channel pair, written once per call) costs as much as the products save below ~2000 pixels
#: (the scratch U-Net's 1024-channel layer at 40x32 ran 2x slower by Winograd).
WINOGRAD_MIN_PIXELS = 4096


def _winograd_applies(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                      padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and tuple(weight.shape[2:]) == (3, 3) and groups == 1
            and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and padding[0] == padding[1]
            and min(weight.shape[0], weight.shape[1]) >= WINOGRAD_MIN_CHANNELS
            and (x.shape[-2] + 2 * padding[0] - 2) * (x.shape[-1] + 2 * padding[1] - 2)
            >= WINOGRAD_MIN_PIXELS
            and fast_convolutions())


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
           dilation: int | tuple[int, int] = 1, groups: int = 1,
           padding_mode: str = "zeros") -> torch.Tensor:
    """``F.conv2d`` with integer padding, by Winograd where that is exact and faster.

    Winograd is used on CPU float32 inputs for 3x3, stride-1, undilated, ungrouped kernels with
    at least :data:`WINOGRAD_MIN_CHANNELS` input and output channels and
    :data:`WINOGRAD_MIN_PIXELS` output pixels, in inference, unless the precision is
    ``"direct"`` (:mod:`oldphoto_core.numerics`).

    ``padding_mode``: ``"zeros"`` (as ``F.conv2d``) or ``"reflect"``, which equals
    ``nn.ReflectionPad2d(padding)`` followed by an unpadded convolution - the pix2pixHD blocks'
    pattern - without materialising the padded map on the Winograd path.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if padding_mode not in ("zeros", "reflect"):
        raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {padding_mode!r}")
    if _winograd_applies(x, weight, stride, padding, dilation, groups):
        return winograd_conv3x3(x, weight, bias, padding[0], padding_mode)
    if padding_mode == "reflect" and any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), mode="reflect")
        padding = (0, 0)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and keys) whose forward goes through :func:`conv2d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
