"""``Conv2d``: PyTorch's convolution module with a faster exact path for wide 3x3 kernels.

This subclass keeps ``nn.Conv2d``'s parameters and state-dict keys (the checkpoint contract is
untouched) and only changes how the forward pass is computed: through
:func:`oldphoto_core.runtime.convolution.conv2d` (Winograd where it is exact and faster).
"""

from __future__ import annotations

import torch
from torch import nn

from ..runtime.convolution import conv2d

__all__ = ["Conv2d"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and keys) whose forward goes through :func:`conv2d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
