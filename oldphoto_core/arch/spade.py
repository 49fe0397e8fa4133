"""SPADE face generator (paper §3.4) with spectral-norm convolutions.

The degraded face conditions every normalisation layer (spatially-adaptive denormalisation) and,
downsampled to ``S/32``, is also the generator's starting point. The published 256 and 512 px
models have identical keys; the run size decides the starting grid (8x8 or 16x16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SpectralNormConv2d
from .conv import Conv2d

__all__ = ["SPADEFaceGenerator"]

_HIDDEN = 128
_UPSAMPLINGS = 5


class SPADE(nn.Module):
    """``BN(x, running stats, no affine) * (1 + gamma(face)) + beta(face)``.

    Keys: ``param_free_norm`` (running stats only), ``mlp_shared.0``, ``mlp_gamma``, ``mlp_beta``.
    """

    def __init__(self, channels: int, cond_channels: int = 3) -> None:
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(Conv2d(cond_channels, _HIDDEN, 3, padding=1), nn.ReLU())
        self.mlp_gamma = Conv2d(_HIDDEN, channels, 3, padding=1)
        self.mlp_beta = Conv2d(_HIDDEN, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        cond = F.interpolate(face, size=x.shape[-2:], mode="bilinear", align_corners=False)
        actv = self.mlp_shared(cond)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """Residual block: SPADE-LReLU-conv twice, learned 1x1 shortcut when widths differ."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralNormConv2d(fin, fmid, 3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmid, fout, 3, padding=1)
        self.norm_0 = SPADE(fin)
        self.norm_1 = SPADE(fmid)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin)

    def forward(self, x: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        skip = self.conv_s(self.norm_s(x, face)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, face), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, face), 0.2))
        return skip + dx


class SPADEFaceGenerator(nn.Module):
    """SPADE generator without parsing map ("Setting_9" / "FaceSR_512").

    Args:
        base: ``ngf`` (64); widths go 16*base -> base.

    Shape:
        - ``face``: ``[B, 3, S, S]`` degraded aligned face in [-1, 1], S a multiple of 32
          (256 or 512 for the published models)
        - Output: ``[B, 3, S, S]`` in [-1, 1]
    """

    def __init__(self, *, base: int = 64) -> None:
        super().__init__()
        nf = base
        self.fc = Conv2d(3, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResBlock(16 * nf, 16 * nf)
        self.G_middle_0 = SPADEResBlock(16 * nf, 16 * nf)
        self.G_middle_1 = SPADEResBlock(16 * nf, 16 * nf)
        self.up_0 = SPADEResBlock(16 * nf, 8 * nf)
        self.up_1 = SPADEResBlock(8 * nf, 4 * nf)
        self.up_2 = SPADEResBlock(4 * nf, 2 * nf)
        self.up_3 = SPADEResBlock(2 * nf, nf)
        self.conv_img = Conv2d(nf, 3, 3, padding=1)

    def forward_pre_tanh(self, face: torch.Tensor) -> torch.Tensor:
        """The generator's output before the final tanh (what the parity kit calls pre_tanh)."""
        h, w = face.shape[-2:]
        step = 2 ** _UPSAMPLINGS
        if h % step or w % step:
            raise ValueError(f"face size must be a multiple of {step}, got {h}x{w}")
        x = F.interpolate(face, size=(h // step, w // step), mode="bilinear", align_corners=False)
        x = self.head_0(self.fc(x), face)
        x = self.G_middle_0(_up(x), face)
        x = self.G_middle_1(x, face)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(_up(x), face)
        return self.conv_img(F.leaky_relu(x, 0.2))

    def forward(self, face: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Enhanced face in [-1, 1]. ``label`` (the reference's unused parsing map) is ignored."""
        return torch.tanh(self.forward_pre_tanh(face))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")
