"""Discriminators: multi-scale PatchGAN (images) and a PatchGAN on VAE latents.

Both return ``(logits, features)`` with one entry per scale: the logits map of that scale and
the list of its hidden feature maps, which feature matching compares. Layout of one scale (the
pix2pixHD ``NLayerDiscriminator`` the reference uses, ``n_layers = 3``): 4x4 stride-2 conv +
LeakyReLU(0.2); ``n_layers - 1`` times 4x4 stride-2 conv + instance norm + LeakyReLU; one
stride-1 conv + instance norm + LeakyReLU; a stride-1 conv to one channel. Widths double from
``ndf`` up to 512. Between scales the input is average-pooled by 2 (3x3, padding 1, padding not
counted). Discriminators exist only in training and are saved only in the resume state.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["PatchDiscriminator", "MultiScaleDiscriminator", "latent_discriminator",
           "NUM_SCALES", "N_LAYERS", "discriminator_width"]

#: The reference's image discriminators: two scales of three strided layers.
NUM_SCALES = 2
N_LAYERS = 3
_MAX_WIDTH = 512


def discriminator_width(width: int) -> int:
    """``ndf`` for a generator of main width ``width``: 64 as published, narrower for small
    generators (so a small model's discriminator does not dwarf it)."""
    return max(4, min(64, width))


def _conv(in_ch: int, out_ch: int, stride: int, spectral: bool) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=stride, padding=2)
    return spectral_norm(conv) if spectral else conv


class PatchDiscriminator(nn.Module):
    """One scale of PatchGAN.

    Args:
        in_channels: channels of what is judged (3 for images, 6 for conditional image pairs,
            the latent width for latents).
        ndf: width of the first layer.
        n_layers: strided layers after the first.
        spectral: spectral normalisation on every conv (the reference's ``--use_SN``).

    Shape:
        ``[B, in_channels, H, W]`` -> (logits ``[B, 1, h, w]``, ``n_layers + 1`` hidden maps);
        H, W >= 8 for ``n_layers = 3`` (instance norm needs more than one position).
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = N_LAYERS, *,
                 spectral: bool = False) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(_conv(in_channels, ndf, 2, spectral),
                                                 nn.LeakyReLU(0.2, inplace=True))]
        nf = ndf
        for _ in range(1, n_layers):
            prev, nf = nf, min(nf * 2, _MAX_WIDTH)
            blocks.append(nn.Sequential(_conv(prev, nf, 2, spectral), nn.InstanceNorm2d(nf),
                                        nn.LeakyReLU(0.2, inplace=True)))
        prev, nf = nf, min(nf * 2, _MAX_WIDTH)
        blocks.append(nn.Sequential(_conv(prev, nf, 1, spectral), nn.InstanceNorm2d(nf),
                                    nn.LeakyReLU(0.2, inplace=True)))
        blocks.append(_conv(nf, 1, 1, spectral))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for block in self.blocks[:-1]:
            x = block(x)
            features.append(x)
        return self.blocks[-1](x), features


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` PatchGANs on the input and its 2x, 4x ... average-pooled copies.

    Shape:
        ``[B, C, H, W]`` -> (per scale logits, per scale list of hidden maps), finest first.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = N_LAYERS,
                 num_scales: int = NUM_SCALES, *, spectral: bool = False) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels, ndf, n_layers, spectral=spectral)
            for _ in range(num_scales))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, features = [], []
        for i, d in enumerate(self.scales):
            if i:
                x = self.pool(x)
            out, feats = d(x)
            logits.append(out)
            features.append(feats)
        return logits, features


def latent_discriminator(channels: int, ndf: int = 64) -> MultiScaleDiscriminator:
    """The latent adversary of ``vae_old`` (eq. 3-4): one PatchGAN scale on the
    ``channels x H/4 x W/4`` latents, as the reference's ``feat_D``."""
    return MultiScaleDiscriminator(channels, ndf, N_LAYERS, num_scales=1)

