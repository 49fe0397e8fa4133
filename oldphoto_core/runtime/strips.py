"""Exact strip-wise execution of the convolutional stacks, for scans larger than memory allows.

Every network of the paper normalises with *instance norm*: statistics over the whole feature
map. Cutting the image into overlapping tiles and running each tile through the network would
change those statistics per tile and leave seams. Instead we run the stack **layer by layer**:
each convolution is computed in horizontal strips (with exactly the input rows its receptive
field needs, and the reference's reflection/zero padding at the true borders), each instance norm
gathers its per-channel statistics over the whole map first (float64 sums) and then normalises in
place. The result equals the untiled network up to floating-point summation order, while the
device only ever holds one strip of one layer - so the full-size maps can live in CPU memory
while a GPU computes, and no layer's padded copy or out-of-place normalisation of a full map is
ever materialised.

Global operations (the attention blocks) are run as they are, on the whole map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .convolution import conv2d
from .in_place import activation_
from .walk import is_plain_instance_norm, walk

__all__ = ["DEFAULT_STRIP_ELEMENTS", "Strips", "run_tiled", "tiled_runner"]

#: Elements of one strip's output (channels x rows x width): 2**25 floats = 128 MiB.
DEFAULT_STRIP_ELEMENTS = 1 << 25


def run_tiled(layers: nn.Module, x: torch.Tensor, *, device: torch.device | None = None,
              strip_elements: int = DEFAULT_STRIP_ELEMENTS) -> torch.Tensor:
    """Run ``layers`` (a Sequential, or a residual block) on ``x`` strip by strip.

    Args:
        layers: the stack, in the walker's vocabulary (:mod:`oldphoto_core.runtime.walk`);
            any other layer runs whole, on ``device``.
        x: ``[B, C, H, W]``; stays where it is (CPU memory for huge scans).
        device: where strips are computed (default: where ``layers``' parameters are).
        strip_elements: budget for one strip's output.

    Returns:
        The stack's output, on ``x``'s device.
    """
    if device is None:
        p = next(layers.parameters(), None)
        device = p.device if p is not None else x.device
    return walk(layers, x, Strips(device, strip_elements))


def tiled_runner(device: torch.device | None = None,
                 strip_elements: int = DEFAULT_STRIP_ELEMENTS) -> Strips:
    """A back end for the networks' ``runner=`` argument (see
    :func:`~oldphoto_core.runtime.walk.run_stack`); ``device``: where strips are computed
    (default: where each stack's parameters are)."""
    return Strips(device, strip_elements)


class Strips:
    """The walker's back end for maps larger than memory allows (see the module's docstring).

    Args:
        device: where strips are computed (``None``: where the layer's parameters are).
        strip_elements: budget for one strip's output.
    """

    def __init__(self, device: torch.device | None = None,
                 strip_elements: int = DEFAULT_STRIP_ELEMENTS) -> None:
        self.device, self.budget = device, strip_elements

    def _device(self, layer: nn.Module, x: torch.Tensor) -> torch.device:
        if self.device is not None:
            return self.device
        p = next(layer.parameters(), None)
        return p.device if p is not None else x.device

    def _rows_per_strip(self, channels: int, width: int) -> int:
        return max(1, self.budget // max(1, channels * width))

    def conv(self, conv: nn.Conv2d, x: torch.Tensor,
             reflect: tuple[int, int, int, int] | None, out: torch.Tensor | None = None
             ) -> torch.Tensor:
        """A stride-s convolution of the padded ``x`` computed in output-row strips; ``out``
        is used unless it is ``x`` itself (later strips still read rows the earlier ones
        would overwrite)."""
        if reflect is None:
            ph, pw = conv.padding
            pad, mode = (pw, pw, ph, ph), "constant"
        else:
            pad, mode = reflect, "reflect"
        left, right, top, bottom = pad
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        b, _, h, w = x.shape
        out_h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + left + right - dw * (kw - 1) - 1) // sw + 1
        shape = (b, conv.out_channels, out_h, out_w)
        if out is None or out is x or out.shape != shape or out.dtype != x.dtype \
                or out.device != x.device:
            out = x.new_empty(shape)
        device = self._device(conv, x)
        rows = self._rows_per_strip(conv.out_channels, out_w)
        for r0 in range(0, out_h, rows):
            r1 = min(out_h, r0 + rows)
            lo = r0 * sh - top                        # first padded-input row needed
            hi = (r1 - 1) * sh - top + dh * (kh - 1) + 1
            strip = x[:, :, max(lo, 0):min(hi, h)].to(device)
            strip = F.pad(strip, (left, right, max(0, -lo), max(0, hi - h)), mode=mode) \
                if mode == "reflect" or any(pad) else strip
            y = conv2d(strip, conv.weight, conv.bias, (sh, sw), 0, (dh, dw), conv.groups)
            out[:, :, r0:r1] = y.to(out.device)
        return out

    def conv_transpose(self, conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
        """A transposed convolution computed in strips of input rows, cropped to what is exact."""
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        (ph, pw), (oph, opw) = conv.padding, conv.output_padding
        device = self._device(conv, x)
        if conv.dilation != (1, 1) or conv.groups != 1:
            return conv(x.to(device)).to(x.device)
        b, _, h, w = x.shape
        out_h = (h - 1) * sh - 2 * ph + kh + oph
        out_w = (w - 1) * sw - 2 * pw + kw + opw
        out = x.new_empty(b, conv.out_channels, out_h, out_w)
        rows = max(1, self._rows_per_strip(conv.out_channels, out_w) // sh)
        halo = math.ceil(kh / sh)
        for i0 in range(0, h, rows):
            i1 = min(h, i0 + rows)
            a, z = max(0, i0 - halo), min(h, i1 + halo)
            y = F.conv_transpose2d(x[:, :, a:z].to(device), conv.weight, conv.bias,
                                   (sh, sw), (0, pw), (0, opw))
            # strip row j is global row a*sh + j - ph; keep the rows whose inputs all lie in
            # [a, z): the rows this strip owns, [i0*sh, i1*sh) in un-padded coordinates
            g0 = i0 * sh - ph if i0 else 0
            g1 = i1 * sh - ph if i1 < h else out_h
            j0 = g0 - (a * sh - ph)
            out[:, :, g0:g1] = y[:, :, j0:j0 + (g1 - g0)].to(out.device)
        return out

    def norm(self, layer: nn.Module, x: torch.Tensor, owned: bool) -> torch.Tensor:
        if is_plain_instance_norm(layer):
            return _instance_norm_(x if owned else x.clone(), layer.eps)
        return self.whole(layer, x)  # batch norm: pointwise, run whole on the device

    def activation(self, layer: nn.Module, x: torch.Tensor, owned: bool) -> torch.Tensor:
        return activation_(layer, x if owned else x.clone())

    def whole(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A global layer (attention ...): run whole, on the compute device."""
        return layer(x.to(self._device(layer, x))).to(x.device)


def _instance_norm_(x: torch.Tensor, eps: float) -> torch.Tensor:
    """In-place instance norm with statistics over the whole map (float64 accumulation)."""
    b, c, h, w = x.shape
    rows = max(1, DEFAULT_STRIP_ELEMENTS // max(1, b * c * w))
    s = torch.zeros(b, c, dtype=torch.float64, device=x.device)
    s2 = torch.zeros_like(s)
    for r0 in range(0, h, rows):
        part = x[:, :, r0:r0 + rows].double()
        s += part.sum(dim=(2, 3))
        s2 += (part * part).sum(dim=(2, 3))
    n = h * w
    mean = s / n
    var = (s2 / n - mean * mean).clamp_min(0)
    scale = (var + eps).rsqrt().to(x.dtype)[:, :, None, None]
    shift = mean.to(x.dtype)[:, :, None, None]
    for r0 in range(0, h, rows):
        part = x[:, :, r0:r0 + rows]
        part.sub_(shift).mul_(scale)
    return x

