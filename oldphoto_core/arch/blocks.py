"""Building blocks shared by the networks of the paper.

The submodule layout (``conv_block.1``, ``conv_block.5`` ...) is part of the checkpoint contract:
the published files index layers by their position in ``nn.Sequential`` containers, so padding and
activation layers must sit at exactly the same positions even though they hold no weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.convolution import conv2d
from ..runtime.in_place import IN_PLACE
from ..runtime.numerics import fast_kernels
from ..runtime.walk import Backend, Residual, StackWalker, run_stack
from .conv import Conv2d

__all__ = ["ResnetBlock", "Runner", "conv_norm_relu", "instance_norm", "run_stack",
           "SpectralNormConv2d"]

#: How a network's stacks are executed (the ``runner=`` argument of the networks' forward
#: methods): a back end of :mod:`oldphoto_core.runtime.walk`, e.g. exact strips
#: (:func:`oldphoto_core.runtime.strips.tiled_runner`); ``None`` for the default.
Runner = Backend


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm without affine parameters or running statistics (no state-dict entries)."""
    return nn.InstanceNorm2d(channels, affine=False)


def conv_norm_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 zero-padded conv + instance norm + ReLU: three positions in a Sequential."""
    return [Conv2d(in_ch, out_ch, 3, 1, 1), instance_norm(out_ch), nn.ReLU(inplace=True)]


class ResnetBlock(Residual):
    """pix2pixHD residual block: ``x + IN(conv(pad(ReLU(IN(conv(pad(x)))))))``.

    Layout of ``conv_block`` (reflect padding, instance norm without affine):
    ``0 pad, 1 conv, 2 norm, 3 relu, 4 pad, 5 conv, 6 norm`` - checkpoint keys
    ``conv_block.1.*`` and ``conv_block.5.*``.

    Shape:
        - Input: ``[B, C, H, W]`` with H, W >= 2 (reflection padding needs it)
        - Output: ``[B, C, H, W]``
    """

    def __init__(self, channels: int, *, dilation: int = 1) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            Conv2d(channels, channels, kernel_size=3, padding=0, dilation=dilation),
            instance_norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            Conv2d(channels, channels, kernel_size=3, padding=0),
            instance_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_kernels():  # in inference: the walker's in-place residual (no temporaries)
            return StackWalker(IN_PLACE).residual(self, x)
        return x + self.conv_block(x)


class SpectralNormConv2d(nn.Module):
    """A convolution whose weight is divided by its largest singular value.

    Stores ``weight_orig`` (parameter), ``weight_u`` and ``weight_v`` (buffers) exactly as
    ``torch.nn.utils.spectral_norm`` names them, so published SPADE checkpoints load unchanged.
    In eval mode the stored vectors are used as they are (no power iteration): the effective
    weight is ``weight_orig / dot(u, W v)`` with ``W = weight_orig.reshape(out, -1)``, which is
    what the reference computes at inference time. In training mode one power iteration per
    forward updates ``u`` and ``v`` in place, as in the original implementation.

    The eval-mode weight is cached until the parameters change (``load_state_dict`` or an
    optimiser step), because recomputing it for every forward is wasted work at inference.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, padding: int = 0,
                 bias: bool = True, eps: float = 1e-12) -> None:
        super().__init__()
        self.stride, self.padding, self.eps = 1, padding, eps
        self.weight_orig = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_uniform_(self.weight_orig, a=5**0.5)
        fan_in = in_ch * kernel_size * kernel_size
        u = F.normalize(torch.randn(out_ch), dim=0, eps=eps)
        v = F.normalize(torch.randn(fan_in), dim=0, eps=eps)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)
        self._cache: tuple[tuple[int, ...], torch.Tensor] | None = None

    def _version_key(self) -> tuple[int, ...]:
        tensors = (self.weight_orig, self.weight_u, self.weight_v)
        ptrs = tuple(t.data_ptr() for t in tensors)
        try:
            return tuple(t._version for t in tensors) + ptrs
        except RuntimeError:  # inference tensors have no version counter (and cannot change
            return ptrs       # in place outside inference mode)

    def _power_iteration(self, w_mat: torch.Tensor) -> None:
        with torch.no_grad():
            v = F.normalize(torch.mv(w_mat.t(), self.weight_u), dim=0, eps=self.eps)
            u = F.normalize(torch.mv(w_mat, v), dim=0, eps=self.eps)
            self.weight_v.copy_(v)
            self.weight_u.copy_(u)

    def weight(self) -> torch.Tensor:
        """The spectrally normalised weight ``[out, in, k, k]``."""
        w = self.weight_orig
        w_mat = w.reshape(w.shape[0], -1)
        if self.training:
            self._power_iteration(w_mat)
        if self.training or torch.is_grad_enabled():
            return w / torch.dot(self.weight_u, torch.mv(w_mat, self.weight_v))
        key = self._version_key()
        if self._cache is None or self._cache[0] != key:
            sigma = torch.dot(self.weight_u, torch.mv(w_mat, self.weight_v))
            self._cache = (key, w / sigma)
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight(), self.bias, self.stride, self.padding)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        self._cache = None  # device/dtype moves invalidate the cached weight
        return super()._apply(fn, recurse)
