"""Building blocks shared by the networks of the paper.

The submodule layout (``conv_block.1``, ``conv_block.5`` ...) is part of the checkpoint contract:
the published files index layers by their position in ``nn.Sequential`` containers, so padding and
activation layers must sit at exactly the same positions even though they hold no weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import fast_kernels
from .conv import Conv2d, conv2d

__all__ = ["ResnetBlock", "Runner", "activation_", "conv_norm_relu", "instance_norm",
           "instance_norm_", "is_plain_instance_norm", "run_stack", "SpectralNormConv2d",
           "IN_PLACE_ACTIVATIONS"]

#: How a convolutional stack is executed: ``runner(stack, x) -> y``. ``None`` calls the stack
#: directly; :func:`oldphoto_core.tiling.run_tiled` computes it in exact strips.
Runner = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def run_stack(stack: nn.Module, x: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
    """``stack(x)``, or ``runner(stack, x)`` when a runner is given.

    In inference with fast kernels (:func:`~oldphoto_core.numerics.fast_kernels`) a Sequential
    stack runs through :func:`_run_sequential_inference`: the same function, with fewer fresh
    feature maps.
    """
    if runner is not None:
        return runner(stack, x)
    if isinstance(stack, nn.Sequential) and fast_kernels() and not _hooked(stack):
        return _run_sequential_inference(stack, x)
    return stack(x)


def _hooked(stack: nn.Module) -> bool:
    """Whether forward hooks watch the stack: the walk below calls layers' kernels directly
    and reuses their outputs' memory, so hooks would not fire or would see overwritten maps."""
    from torch.nn.modules import module as module_globals
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in stack.modules())


#: Layers whose output is always a fresh tensor (never a view of their input).
_FRESH_OUTPUT = (nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.BatchNorm2d,
                 nn.ReflectionPad2d, nn.Tanh, nn.Upsample)


def _run_sequential_inference(stack: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``stack(x)`` in inference, reusing feature maps the stack itself produced.

    Why: every fresh CPU feature map above glibc's mmap threshold (32 MB; a 512-channel map at
    124x156 is 40 MB) is paid again in page faults on first touch, about 15 ms each, and the
    scratch mapping makes about fifty of them. Here a map this walk produced ("owned") is
    normalised and rectified in place, reflection padding is folded into the next convolution,
    and a chain of residual blocks rotates two buffers instead of allocating two per block.
    The caller's ``x`` is never modified.
    """
    owned = False                      # was x made by this walk (may it be overwritten)?
    spare: torch.Tensor | None = None  # an owned map no longer needed
    layers = list(stack)
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        pad = _symmetric_reflection(layer)
        if isinstance(layer, ResnetBlock):
            fits = spare is not None and spare.shape == x.shape and spare.dtype == x.dtype
            y = layer.inference(x, out=spare if fits else None)
            spare, owned = (x if owned else None), True
        elif pad is not None and isinstance(nxt, nn.Conv2d) and nxt.padding == (0, 0) \
                and nxt.padding_mode == "zeros":
            y = conv2d(x, nxt.weight, nxt.bias, nxt.stride, pad, nxt.dilation, nxt.groups,
                       padding_mode="reflect")
            owned = True
            i += 1
        elif owned and is_plain_instance_norm(layer):
            y = instance_norm_(x, layer.eps)
        elif owned and isinstance(layer, nn.BatchNorm2d) and not layer.training \
                and layer.running_mean is not None and layer.running_var is not None:
            y = _batch_norm_eval_(x, layer)
        elif owned and isinstance(layer, IN_PLACE_ACTIVATIONS):
            y = activation_(layer, x)
        else:
            y = layer(x)
            owned = isinstance(layer, _FRESH_OUTPUT)
        x = y
        i += 1
    return x


#: Activations that :func:`activation_` applies in place.
IN_PLACE_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh)


def activation_(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a ReLU, LeakyReLU or Tanh module to ``x`` in place (``x`` must be ours to change)."""
    if isinstance(module, nn.ReLU):
        return x.clamp_(min=0)
    if isinstance(module, nn.LeakyReLU):
        return F.leaky_relu_(x, module.negative_slope)
    if isinstance(module, nn.Tanh):
        return x.tanh_()
    raise TypeError(f"no in-place form for {type(module).__name__}")


def is_plain_instance_norm(layer: nn.Module) -> bool:
    """Instance norm without affine parameters or running statistics (the networks' kind)."""
    return isinstance(layer, nn.InstanceNorm2d) and not layer.affine \
        and not layer.track_running_stats


def _batch_norm_eval_(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode batch norm (stored statistics) in place: ``x * scale + shift`` per channel."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    view = (1, -1) + (1,) * (x.dim() - 2)
    return x.mul_(scale.to(x.dtype).view(view)).add_(shift.to(x.dtype).view(view))


def _symmetric_reflection(layer: nn.Module) -> int | None:
    """The padding of a ``ReflectionPad2d`` that pads all four sides alike, else None."""
    if not isinstance(layer, nn.ReflectionPad2d):
        return None
    left, right, top, bottom = layer.padding
    return left if left == right == top == bottom else None


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm without affine parameters or running statistics (no state-dict entries)."""
    return nn.InstanceNorm2d(channels, affine=False)


def instance_norm_(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``F.instance_norm(x, eps=eps)`` (no affine, no running statistics), in place.

    Why not ``F.instance_norm``: on CPUs it is 4x slower (it goes through the batch-norm
    kernel's training path) and it returns a fresh map, whose first touch alone costs about as
    much as the whole normalisation here on a 40 MB map. Centring first and then summing
    squares (one batched dot product per channel) keeps the variance free of cancellation:
    measured within 2.3e-6 of a float64 reference on a map of mean 5, against 6e-7 for PyTorch.

    Shape: ``[B, C, H, W]``; ``x`` is returned.
    """
    if not x.is_contiguous():
        return x.copy_(F.instance_norm(x, eps=eps))
    n = x.shape[-2] * x.shape[-1]
    x.sub_(x.mean(dim=(2, 3), keepdim=True))
    flat = x.view(-1, 1, n)
    var = torch.bmm(flat, flat.transpose(1, 2)).view(x.shape[0], x.shape[1], 1, 1).div_(n)
    return x.mul_(var.add_(eps).rsqrt_())


def conv_norm_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 zero-padded conv + instance norm + ReLU: three positions in a Sequential."""
    return [Conv2d(in_ch, out_ch, 3, 1, 1), instance_norm(out_ch), nn.ReLU(inplace=True)]


class ResnetBlock(nn.Module):
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
        if fast_kernels():
            return self.inference(x)
        return x + self.conv_block(x)

    def inference(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The same function without the block's temporary maps (inference only).

        Reflection padding is folded into the convolutions, and normalisation, ReLU and the
        residual sum run in place on the convolutions' outputs; the second convolution writes
        over the first one's output. On a 512-channel map at 124x156 each avoided temporary is
        a 40 MB allocation plus a pass over it (about 20 ms on a 2-core CPU); the block runs
        nine times in the scratch mapping.

        Args:
            x: ``[B, C, H, W]``, not modified.
            out: a free buffer of ``x``'s shape (not ``x``) that the result may be written to;
                see :func:`~oldphoto_core.arch.conv.conv2d`. Use the returned tensor.
        """
        pad1, conv1, norm1, _, pad2, conv2, norm2 = self.conv_block
        h = conv2d(x, conv1.weight, conv1.bias, 1, _reflect_amount(pad1), conv1.dilation,
                   padding_mode="reflect", out=out)
        instance_norm_(h, norm1.eps).clamp_(min=0)
        h = conv2d(h, conv2.weight, conv2.bias, 1, _reflect_amount(pad2),
                   padding_mode="reflect", out=h)
        return instance_norm_(h, norm2.eps).add_(x)


def _reflect_amount(pad: nn.ReflectionPad2d) -> int:
    amount = _symmetric_reflection(pad)
    if amount is None:
        raise ValueError(f"ResnetBlock expects symmetric reflection padding, got {pad.padding}")
    return amount


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
