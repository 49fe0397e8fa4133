"""Scratch detection U-Net (paper §3.3) with anti-aliased (blur-pool) downsampling.

Outputs logits; the detector's probability is ``sigmoid(logits)`` and the published pipeline
thresholds it at 0.4. Batch norms run on their stored statistics in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import run_stack
from .conv import Conv2d

__all__ = ["ScratchUNet", "BlurPool"]


def _binomial_filter(channels: int) -> torch.Tensor:
    """``[C, 1, 3, 3]`` copies of the normalised binomial [1 2 1]^T [1 2 1] / 16.

    Built from Python numbers by one factory call: models are constructed on the meta device,
    where arithmetic on tensors goes through PyTorch's reference decompositions, whose first
    use imports ``torch._refs`` and its dependencies (2.3 s measured).
    """
    taps = [[a * b / 16 for b in (1, 2, 1)] for a in (1, 2, 1)]
    return torch.tensor([[taps]] * channels)


class BlurPool(nn.Module):
    """Reflect-pad by 1, blur with a depthwise 3x3 filter, keep every second pixel.

    The filter is a buffer named ``filt`` (``[C, 1, 3, 3]``) because the checkpoint stores it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("filt", _binomial_filter(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2,
                        groups=x.shape[1])


def _conv_bn_lrelu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), Conv2d(in_ch, out_ch, kernel_size=3), nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(0.2, inplace=True)]


class _ConvBlock(nn.Module):
    """Two pad-conv-BN-LeakyReLU layers (``block.1/2`` and ``block.5/6`` in the checkpoint)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.block = nn.Sequential(*_conv_bn_lrelu(in_ch, out_ch), *_conv_bn_lrelu(out_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_stack(self.block, x)


class _UpBlock(nn.Module):
    """Bilinear x2, pad-conv (``up.2``), concat with the skip, conv block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                nn.ReflectionPad2d(1), Conv2d(in_ch, out_ch, kernel_size=3))
        self.conv_block = _ConvBlock(in_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([run_stack(self.up, x), skip], dim=1))


class ScratchUNet(nn.Module):
    """U-Net of depth 4, base width 64, single-channel (grayscale) input, logits out.

    Args:
        in_channels: 1 for the published detector (grayscale in [-1, 1]).
        out_channels: 1.
        depth: number of down/up levels (4).
        base: width of the first level (64).

    Shape:
        - Input: ``[B, 1, H, W]``, H and W multiples of ``2**depth`` (16)
        - Output: ``[B, 1, H, W]`` logits
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, depth: int = 4,
                 base: int = 64) -> None:
        super().__init__()
        self.multiple_of = 2 ** depth
        self.first = nn.Sequential(nn.ReflectionPad2d(3), Conv2d(in_channels, base, 7),
                                   nn.LeakyReLU(0.2, inplace=True))
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down_sample = nn.ModuleList(
            nn.Sequential(*_conv_bn_lrelu(c, c), BlurPool(c)) for c in widths[:-1])
        self.down_path = nn.ModuleList(
            _ConvBlock(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.up_path = nn.ModuleList(
            _UpBlock(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.last = nn.Sequential(nn.ReflectionPad2d(1), Conv2d(base, out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.multiple_of or w % self.multiple_of:
            raise ValueError(f"ScratchUNet needs H and W multiples of {self.multiple_of}, "
                             f"got {h}x{w}; pad or resize first")
        # run_stack: in inference, in-place normalisation and folded padding (arch.blocks)
        x = run_stack(self.first, x)
        skips = []
        for down, block in zip(self.down_sample, self.down_path, strict=True):
            skips.append(x)
            x = block(run_stack(down, x))
        for up, skip in zip(self.up_path, reversed(skips), strict=True):
            x = up(x, skip)
        return run_stack(self.last, x)
