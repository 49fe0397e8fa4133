"""The learning-rate schedule of the paper: constant, then linear decay to zero.

A pure function of the step (as nanoGPT's), so a resumed run needs nothing but the step. The
decay covers the second half of ``--steps`` (the reference: ``niter`` constant epochs, then
``niter_decay`` decaying ones, equal in its recipes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["lr_factor", "make_scheduler"]


def lr_factor(step: int, total: int) -> float:
    """Multiplier of the base rate for the step after ``step`` completed steps.

    1 for ``step < total // 2``, then ``(total - step) / (total - total // 2)``, 0 at the end.
    """
    half = total // 2
    if step < half:
        return 1.0
    return max(0.0, (total - step) / max(1, total - half))


def make_scheduler(optimizer: torch.optim.Optimizer, total: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over :func:`lr_factor`; a plain closure, so its state holds only the step
    (a resumed run may change ``--steps`` and the new total takes effect)."""
    def factor(step: int) -> float:
        return lr_factor(step, total)
    fn: Callable[[int], float] = factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
