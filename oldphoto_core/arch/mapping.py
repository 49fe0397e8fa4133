"""Latent mapping networks (paper §3.2): old-photo latent -> clean-photo latent.

Three published variants share the same stem (64 -> 128 -> 256 -> 512 -> 512 convs) and tail
(512 -> 256 -> 128 -> 64):

* :class:`QualityMapping` - residual blocks only (``mapping_quality``, unstructured damage);
* :class:`ScratchMapping` - a partial non-local block that fills scratches from clean context
  (``mapping_scratch``);
* :class:`PatchAttentionMapping` - multi-scale patch attention for high-resolution photos
  (``mapping_Patch_Attention``).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ResnetBlock, Runner, conv_norm_relu, run_stack
from .conv import Conv2d
from .partial_nonlocal import PartialNonLocalBlock
from .patch_attention import PatchAttention

__all__ = ["QualityMapping", "ScratchMapping", "PatchAttentionMapping"]


def _stem(latent_ch: int, width: int) -> list[nn.Module]:
    """Four conv-IN-ReLU layers widening ``latent_ch`` to ``width`` (indices 0, 3, 6, 9)."""
    chans = [latent_ch, min(2 * latent_ch, width), min(4 * latent_ch, width),
             min(8 * latent_ch, width), min(16 * latent_ch, width)]
    return [m for a, b in zip(chans, chans[1:], strict=False) for m in conv_norm_relu(a, b)]


def _tail(latent_ch: int, width: int) -> list[nn.Module]:
    """Three conv-IN-ReLU layers narrowing back, then a plain conv to ``latent_ch``."""
    chans = [min(16 * latent_ch, width), min(8 * latent_ch, width), min(4 * latent_ch, width),
             min(2 * latent_ch, width)]
    layers = [m for a, b in zip(chans, chans[1:], strict=False) for m in conv_norm_relu(a, b)]
    return layers + [Conv2d(chans[-1], latent_ch, 3, 1, 1)]


class QualityMapping(nn.Module):
    """``model``: stem (0-9), ``n_blocks`` ResnetBlocks (12..), tail. ``forward(latent)``.

    Shape: ``[B, 64, h, w]`` -> ``[B, 64, h, w]``.
    """

    def __init__(self, *, latent_channels: int = 64, width: int = 512, n_blocks: int = 6) -> None:
        super().__init__()
        self.model = nn.Sequential(*_stem(latent_channels, width),
                                   *(ResnetBlock(width) for _ in range(n_blocks)),
                                   *_tail(latent_channels, width))

    def forward(self, latent: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
        return run_stack(self.model, latent, runner)


class ScratchMapping(nn.Module):
    """``before_NL`` stem, ``NL`` partial non-local block, ``after_NL`` blocks + tail.

    ``forward(latent, mask)`` with ``mask`` ``[B, 1, 4h, 4w]`` at image resolution, 1 = scratch.
    """

    def __init__(self, *, latent_channels: int = 64, width: int = 512, n_blocks: int = 6) -> None:
        super().__init__()
        self.before_NL = nn.Sequential(*_stem(latent_channels, width))
        self.NL = PartialNonLocalBlock(width)
        self.after_NL = nn.Sequential(*(ResnetBlock(width) for _ in range(n_blocks)),
                                      *_tail(latent_channels, width))

    def forward(self, latent: torch.Tensor, mask: torch.Tensor,
                runner: Runner | None = None) -> torch.Tensor:
        x = self.NL(run_stack(self.before_NL, latent, runner), mask, runner)
        return run_stack(self.after_NL, x, runner)


class PatchAttentionMapping(nn.Module):
    """Stem + 2 blocks, then three patch-attention scales (8, 4, 2) separated by 2 blocks each.

    ``forward(latent, mask)`` is the reference's ``inference_forward``; ``mask`` at image
    resolution (``test.py --HR`` dilates it by 3 iterations of a 3x3 kernel first).
    """

    PATCH_SIZES = (8, 4, 2)

    def __init__(self, *, latent_channels: int = 64, width: int = 512) -> None:
        super().__init__()
        self.before_NL = nn.Sequential(*_stem(latent_channels, width),
                                       ResnetBlock(width), ResnetBlock(width))
        self.NL_scale_1 = PatchAttention(width, patch_size=self.PATCH_SIZES[0])
        self.res_block_1 = nn.Sequential(ResnetBlock(width), ResnetBlock(width))
        self.NL_scale_2 = PatchAttention(width, patch_size=self.PATCH_SIZES[1])
        self.res_block_2 = nn.Sequential(ResnetBlock(width), ResnetBlock(width))
        self.NL_scale_3 = PatchAttention(width, patch_size=self.PATCH_SIZES[2])
        self.after_NL = nn.Sequential(ResnetBlock(width), ResnetBlock(width),
                                      *_tail(latent_channels, width))

    def forward(self, latent: torch.Tensor, mask: torch.Tensor,
                runner: Runner | None = None) -> torch.Tensor:
        x = self.NL_scale_1(run_stack(self.before_NL, latent, runner), mask, runner)
        x = self.NL_scale_2(run_stack(self.res_block_1, x, runner), mask, runner)
        x = self.NL_scale_3(run_stack(self.res_block_2, x, runner), mask, runner)
        return run_stack(self.after_NL, x, runner)

    def inference_forward(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`forward`, under the reference's name."""
        return self.forward(latent, mask)
