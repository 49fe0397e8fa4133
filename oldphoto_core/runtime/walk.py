"""One walker of the networks' ``nn.Sequential`` stacks; back ends decide how layers run.

The networks of the paper are stacks of a small vocabulary of layers: reflection padding
followed by an unpadded convolution, zero-padded convolutions, transposed convolutions,
instance (or eval-mode batch) norms, ReLU / LeakyReLU / Tanh, pix2pixHD residual blocks and
nested stacks. :class:`StackWalker` understands that vocabulary once: it folds each reflection
padding into the convolution that follows, tracks which feature maps the walk made itself (so
that norms and activations may overwrite them, never the caller's input) and hands a residual
chain two buffers to rotate. *How* a convolution or a norm runs is the back end's choice:

* :class:`~oldphoto_core.runtime.in_place.InPlace`: whole maps where they are, normalised and
  rectified in place (the default inference path, :func:`run_stack`);
* :class:`~oldphoto_core.runtime.strips.Strips`: convolutions in horizontal strips against
  the whole map, instance-norm statistics gathered over all strips (scans larger than memory).

Which convolution algorithm runs (Winograd or direct) is decided below both, in
:func:`~oldphoto_core.runtime.convolution.conv2d`. A layer outside the vocabulary runs whole
(``Backend.whole``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .numerics import fast_kernels

__all__ = ["Backend", "Residual", "StackWalker", "FRESH_OUTPUT", "IN_PLACE_ACTIVATIONS",
           "is_plain_instance_norm", "run_stack", "walk"]

#: Activations the back ends apply in place.
IN_PLACE_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh)
#: Layers whose output is always a fresh tensor (never a view of their input).
FRESH_OUTPUT = (nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.BatchNorm2d,
                nn.ReflectionPad2d, nn.Tanh, nn.Upsample)


class Residual(nn.Module):
    """Marks a residual block ``x + conv_block(x)`` whose ``conv_block`` is
    ``pad, conv, norm, activation, pad, conv, norm`` (pix2pixHD's layout): the walker runs
    the body with two buffers, the first convolution writing into a spare one and the second
    over its own input."""

    conv_block: nn.Sequential


class Backend(Protocol):
    """How the walker's layers run. ``owned``: the walk made ``x`` and may overwrite it."""

    def conv(self, conv: nn.Conv2d, x: torch.Tensor,
             reflect: tuple[int, int, int, int] | None, out: torch.Tensor | None = None
             ) -> torch.Tensor:
        """``conv`` of ``x``; ``reflect``: (left, right, top, bottom) reflection padding folded
        in from the layer before (``conv`` then has none of its own), ``None``: the layer's own
        zero padding. ``out``: a buffer the result may be written to (may be ``x``)."""

    def conv_transpose(self, conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor: ...

    def norm(self, layer: nn.Module, x: torch.Tensor, owned: bool) -> torch.Tensor:
        """A plain instance norm or an eval-mode batch norm."""

    def activation(self, layer: nn.Module, x: torch.Tensor, owned: bool) -> torch.Tensor: ...

    def whole(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Any other layer, run on the whole map."""


def is_plain_instance_norm(layer: nn.Module) -> bool:
    """Instance norm without affine parameters or running statistics (the networks' kind)."""
    return isinstance(layer, nn.InstanceNorm2d) and not layer.affine \
        and not layer.track_running_stats


def _is_eval_batch_norm(layer: nn.Module) -> bool:
    return isinstance(layer, nn.BatchNorm2d) and not layer.training \
        and layer.running_mean is not None and layer.running_var is not None


def _folds(pad: nn.Module, conv: nn.Module | None) -> bool:
    """A reflection padding that the next layer, an unpadded convolution, can take over."""
    return isinstance(pad, nn.ReflectionPad2d) and isinstance(conv, nn.Conv2d) \
        and tuple(conv.padding) == (0, 0) and conv.padding_mode == "zeros"


class StackWalker:
    """Runs a module of the vocabulary above through ``backend``; the caller's input is never
    modified."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self._module(module, x, owned=False)[0]

    def _module(self, m: nn.Module, x: torch.Tensor, owned: bool) -> tuple[torch.Tensor, bool]:
        """``(output, whether the walk owns it)``."""
        be = self.backend
        if isinstance(m, Residual):
            return self.residual(m, x), True
        if isinstance(m, nn.Sequential):
            return self._sequence(list(m), x, owned)
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" \
                and not isinstance(m.padding, str):
            return be.conv(m, x, None), True
        if isinstance(m, nn.ConvTranspose2d):
            return be.conv_transpose(m, x), True
        if is_plain_instance_norm(m) or _is_eval_batch_norm(m):
            return be.norm(m, x, owned), True
        if isinstance(m, IN_PLACE_ACTIVATIONS):
            return be.activation(m, x, owned), True
        return be.whole(m, x), isinstance(m, FRESH_OUTPUT)

    def _sequence(self, layers: list[nn.Module], x: torch.Tensor, owned: bool
                  ) -> tuple[torch.Tensor, bool]:
        spare: torch.Tensor | None = None  # an owned map no longer needed
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Residual):
                fits = spare is not None and spare.shape == x.shape and \
                    spare.dtype == x.dtype and spare.device == x.device
                y = self.residual(layer, x, out=spare if fits else None)
                spare, owned = (x if owned else None), True
            elif _folds(layer, nxt):
                y, owned = self.backend.conv(nxt, x, tuple(layer.padding)), True
                i += 1
            else:
                y, owned = self._module(layer, x, owned)
            x = y
            i += 1
        return x, owned

    def residual(self, block: Residual, x: torch.Tensor, out: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """``x + block.conv_block(x)``: the first convolution may write into ``out`` (a free
        buffer of ``x``'s shape, not ``x``), the second over its own input."""
        pad1, conv1, norm1, act, pad2, conv2, norm2 = block.conv_block
        be = self.backend
        h = be.conv(conv1, x, tuple(pad1.padding), out=out)
        h = be.activation(act, be.norm(norm1, h, True), True)
        h = be.conv(conv2, h, tuple(pad2.padding), out=h)
        return be.norm(norm2, h, True).add_(x)


def walk(module: nn.Module, x: torch.Tensor, backend: Backend) -> torch.Tensor:
    """``module(x)`` through ``backend``."""
    return StackWalker(backend).run(module, x)


def run_stack(stack: nn.Module, x: torch.Tensor, backend: Backend | None = None
              ) -> torch.Tensor:
    """``stack(x)`` as the networks run it: through ``backend`` when one is given (e.g. exact
    strips, :func:`~oldphoto_core.runtime.strips.tiled_runner`); in inference with fast kernels
    (:func:`~oldphoto_core.runtime.numerics.fast_kernels`) through the in-place back end, the same
    function with fewer fresh feature maps; otherwise PyTorch's own ``stack(x)``.
    """
    if backend is not None:
        return walk(stack, x, backend)
    if isinstance(stack, nn.Sequential) and fast_kernels() and not _hooked(stack):
        from .in_place import IN_PLACE
        return walk(stack, x, IN_PLACE)
    return stack(x)


def _hooked(stack: nn.Module) -> bool:
    """Whether forward hooks watch the stack: the walk calls layers' kernels directly and
    reuses their outputs' memory, so hooks would not fire or would see overwritten maps."""
    from torch.nn.modules import module as module_globals
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in stack.modules())
