"""The VAE of both domains (paper §3.1): ``GlobalGenerator_DCDCv2`` of the published code.

VAE_A (old photos) and VAE_B (clean photos) share this architecture; a checkpoint holds both the
encoder and the decoder. The latent is ``64 x H/4 x W/4`` and unbounded; the decoder ends in tanh.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ResnetBlock, Runner, instance_norm, run_stack
from .conv import Conv2d

__all__ = ["OldPhotoVAE"]


def _down(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1), instance_norm(out_ch),
            nn.ReLU(inplace=True)]


def _up(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1),
            instance_norm(out_ch), nn.ReLU(inplace=True)]


class OldPhotoVAE(nn.Module):
    """Encoder/decoder pair with a 4x-downsampled, 64-channel latent.

    Encoder layout (checkpoint index: layer): ``0 pad, 1 conv7, 2 IN, 3 ReLU, 4 conv4/2, 5 IN,
    6 ReLU, 7 conv4/2, 8 IN, 9 ReLU, 10-13 ResnetBlock``. Decoder: ``0-3 ResnetBlock,
    4 convT4/2, 5 IN, 6 ReLU, 7 convT4/2, 8 IN, 9 ReLU, 10 pad, 11 conv7, 12 tanh``.

    Args:
        channels: width of every layer (64 in the published checkpoints).
        image_channels: channels of the image (3).

    Shape:
        - encode: ``[B, 3, H, W]`` in [-1, 1], H and W multiples of 4 -> ``[B, 64, H/4, W/4]``
        - decode: ``[B, 64, h, w]`` -> ``[B, 3, 4h, 4w]`` in [-1, 1]
    """

    def __init__(self, *, channels: int = 64, image_channels: int = 3) -> None:
        super().__init__()
        c = channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), Conv2d(image_channels, c, kernel_size=7), instance_norm(c),
            nn.ReLU(inplace=True),
            *_down(c, c),
            *_down(c, c),
            *(ResnetBlock(c) for _ in range(4)),
        )
        self.decoder = nn.Sequential(
            *(ResnetBlock(c) for _ in range(4)),
            *_up(c, c),
            *_up(c, c),
            nn.ReflectionPad2d(3), Conv2d(c, image_channels, kernel_size=7), nn.Tanh(),
        )

    def encode(self, image: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
        """Image in [-1, 1] ``[B, 3, H, W]`` -> latent ``[B, 64, H/4, W/4]``."""
        return run_stack(self.encoder, image, runner)

    def decode(self, latent: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
        """Latent ``[B, 64, h, w]`` -> image in [-1, 1] ``[B, 3, 4h, 4w]``."""
        return run_stack(self.decoder, latent, runner)

    def forward(self, x: torch.Tensor, flow: str = "enc_dec") -> torch.Tensor:
        """``flow`` is ``'enc'``, ``'dec'`` or ``'enc_dec'``, as in the reference's call."""
        if flow == "enc":
            return self.encode(x)
        if flow == "dec":
            return self.decode(x)
        if flow == "enc_dec":
            return self.decode(self.encode(x))
        raise ValueError(f"flow must be 'enc', 'dec' or 'enc_dec', got {flow!r}")
