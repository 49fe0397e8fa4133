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

from .arch.blocks import IN_PLACE_ACTIVATIONS, ResnetBlock, activation_, is_plain_instance_norm
from .arch.conv import conv2d

__all__ = ["run_tiled", "tiled_runner", "DEFAULT_STRIP_ELEMENTS"]

#: Elements of one strip's output (channels x rows x width): 2**25 floats = 128 MiB.
DEFAULT_STRIP_ELEMENTS = 1 << 25


def run_tiled(layers: nn.Module, x: torch.Tensor, *, device: torch.device | None = None,
              strip_elements: int = DEFAULT_STRIP_ELEMENTS) -> torch.Tensor:
    """Run ``layers`` (a Sequential, or a ResnetBlock) on ``x`` strip by strip.

    Args:
        layers: the stack; supported children: ``ReflectionPad2d`` followed by a
            ``Conv2d`` without padding, ``Conv2d`` with zero padding, ``ConvTranspose2d``,
            ``InstanceNorm2d`` (no affine, no running stats), ``ReLU``, ``LeakyReLU``, ``Tanh``,
            :class:`ResnetBlock` and nested ``Sequential``; anything else runs whole.
        x: ``[B, C, H, W]``; stays where it is (CPU memory for huge scans).
        device: where strips are computed (default: where ``layers``' parameters are).
        strip_elements: budget for one strip's output.

    Returns:
        The stack's output, on ``x``'s device.
    """
    if device is None:
        p = next(layers.parameters(), None)
        device = p.device if p is not None else x.device
    return _Runner(device, strip_elements, x).run(layers, x)


def tiled_runner(device: torch.device | None = None,
                 strip_elements: int = DEFAULT_STRIP_ELEMENTS):
    """A ``runner(stack, x)`` for the networks' ``runner=`` argument (see ``arch.blocks``)."""
    def runner(stack: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return run_tiled(stack, x, device=device, strip_elements=strip_elements)
    return runner


class _Runner:
    def __init__(self, device: torch.device, strip_elements: int, caller_input: torch.Tensor
                 ) -> None:
        self.device, self.budget = device, strip_elements
        self.caller_input = caller_input  # never modified in place

    def _own(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone() if x is self.caller_input else x

    def run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(module, ResnetBlock):
            out = self.run(module.conv_block, x)
            return out.add_(x)
        if isinstance(module, nn.Sequential):
            children = list(module)
            i = 0
            while i < len(children):
                layer = children[i]
                nxt = children[i + 1] if i + 1 < len(children) else None
                if isinstance(layer, nn.ReflectionPad2d) and isinstance(nxt, nn.Conv2d) \
                        and _no_padding(nxt):
                    x = self.conv(nxt, x, _pad_of(layer), "reflect")
                    i += 2
                    continue
                x = self.run(layer, x)
                i += 1
            return x
        if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
            ph, pw = module.padding if isinstance(module.padding, tuple) else (module.padding,) * 2
            return self.conv(module, x, (pw, pw, ph, ph), "constant")
        if isinstance(module, nn.ConvTranspose2d):
            return self.conv_transpose(module, x)
        if is_plain_instance_norm(module):
            return _instance_norm_(self._own(x), module.eps)
        if isinstance(module, IN_PLACE_ACTIVATIONS):
            return activation_(module, self._own(x))
        # global layer: run whole, on the compute device
        return module(x.to(self.device)).to(x.device)

    def _rows_per_strip(self, channels: int, width: int) -> int:
        return max(1, self.budget // max(1, channels * width))

    def conv(self, conv: nn.Conv2d, x: torch.Tensor, pad: tuple[int, int, int, int],
             mode: str) -> torch.Tensor:
        """A stride-s convolution of ``pad(x)`` computed in output-row strips."""
        left, right, top, bottom = pad
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        b, _, h, w = x.shape
        out_h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + left + right - dw * (kw - 1) - 1) // sw + 1
        out = x.new_empty(b, conv.out_channels, out_h, out_w)
        rows = self._rows_per_strip(conv.out_channels, out_w)
        for r0 in range(0, out_h, rows):
            r1 = min(out_h, r0 + rows)
            lo = r0 * sh - top                        # first padded-input row needed
            hi = (r1 - 1) * sh - top + dh * (kh - 1) + 1
            strip = x[:, :, max(lo, 0):min(hi, h)].to(self.device)
            strip = F.pad(strip, (left, right, max(0, -lo), max(0, hi - h)), mode=mode) \
                if mode == "reflect" or any(pad) else strip
            y = conv2d(strip, conv.weight, conv.bias, (sh, sw), 0, (dh, dw), conv.groups)
            out[:, :, r0:r1] = y.to(out.device)
        return out

    def conv_transpose(self, conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
        """A transposed convolution computed in strips of input rows, cropped to what is exact."""
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        (ph, pw), (oph, opw) = conv.padding, conv.output_padding
        if conv.dilation != (1, 1) or conv.groups != 1:
            return conv(x.to(self.device)).to(x.device)
        b, _, h, w = x.shape
        out_h = (h - 1) * sh - 2 * ph + kh + oph
        out_w = (w - 1) * sw - 2 * pw + kw + opw
        out = x.new_empty(b, conv.out_channels, out_h, out_w)
        rows = max(1, self._rows_per_strip(conv.out_channels, out_w) // sh)
        halo = math.ceil(kh / sh)
        for i0 in range(0, h, rows):
            i1 = min(h, i0 + rows)
            a, z = max(0, i0 - halo), min(h, i1 + halo)
            y = F.conv_transpose2d(x[:, :, a:z].to(self.device), conv.weight, conv.bias,
                                   (sh, sw), (0, pw), (0, opw))
            # strip row j is global row a*sh + j - ph; keep the rows whose inputs all lie in
            # [a, z): the rows this strip owns, [i0*sh, i1*sh) in un-padded coordinates
            g0 = i0 * sh - ph if i0 else 0
            g1 = i1 * sh - ph if i1 < h else out_h
            j0 = g0 - (a * sh - ph)
            out[:, :, g0:g1] = y[:, :, j0:j0 + (g1 - g0)].to(out.device)
        return out


def _no_padding(conv: nn.Conv2d) -> bool:
    pad = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 2
    return tuple(pad) == (0, 0)


def _pad_of(layer: nn.ReflectionPad2d) -> tuple[int, int, int, int]:
    return tuple(layer.padding)  # (left, right, top, bottom)


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

