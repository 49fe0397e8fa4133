"""A discriminator with its optimiser, in the two roles it plays each step.

* :meth:`Critic.generator_terms` - the generator's view: LSGAN and feature-matching terms of a
  generated batch, with the discriminator frozen (its weights get no gradient) and called
  unwrapped (no DDP bookkeeping for a pass that trains the generator);
* :meth:`Critic.step` - the discriminator's own update on real and (detached) generated inputs,
  through its DDP wrapper so gradients are averaged across ranks.

Conditional critics (mapping, face) judge ``cat(condition, image)`` as pix2pixHD does;
real and generated inputs go through one forward pass (instance norm keeps them independent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .distributed import Context, wrap
from .losses import feature_matching_loss, lsgan_d_loss, lsgan_g_loss

__all__ = ["Critic", "adam", "frozen"]


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the paper's betas (0.5, 0.999)."""
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Inside the block ``module``'s parameters take no gradient.

    The graph built inside treats them as constants; setting ``requires_grad`` back afterwards
    does not change it, so a later ``backward`` gives them nothing.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _split(xs: list, n: int) -> tuple[list, list]:
    return [x[:n] for x in xs], [x[n:] for x in xs]


class Critic:
    """A multi-scale discriminator, its DDP wrapper and its Adam optimiser.

    Args:
        net: a :class:`~training.discriminators.MultiScaleDiscriminator` on the device.
        ctx: the process context (for the DDP wrapper).
        lr: learning rate.
        active: ``False`` (``--gan-weight 0``) turns the critic off: both roles return zeros
            without running the discriminator, which then never changes. The network and its
            optimiser still exist, so resume states keep one layout whatever the weight.
    """

    def __init__(self, net: nn.Module, ctx: Context, lr: float, *, active: bool = True) -> None:
        self.net = net
        self.ddp = wrap(net, ctx)
        self.optimizer = adam(net.parameters(), lr)
        self.active = active

    @staticmethod
    def _inputs(image: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return image if cond is None else torch.cat([cond, image], dim=1)

    def generator_terms(self, fake: torch.Tensor, real: torch.Tensor | None,
                        cond: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(LSGAN generator term, feature matching)`` of ``fake`` against ``real``.

        Without ``real`` only the LSGAN term is computed (feature matching is zero).

        Shape: ``fake``, ``real`` ``[B, C, H, W]`` (``cond`` ``[B, C', H, W]``) -> scalars.
        """
        if not self.active:
            zero = fake.new_zeros(())
            return zero, zero
        n = fake.shape[0]
        parts = [self._inputs(fake, cond)]
        if real is not None:
            parts.append(self._inputs(real, cond))
        with frozen(self.net):
            logits, feats = self.net(torch.cat(parts))
        fake_logits, _ = _split(logits, n)
        gan = lsgan_g_loss(fake_logits)
        if real is None:
            return gan, gan.new_zeros(())
        fake_feats = [_split(f, n)[0] for f in feats]
        real_feats = [[t.detach() for t in _split(f, n)[1]] for f in feats]
        return gan, feature_matching_loss(fake_feats, real_feats)

    def step(self, real: torch.Tensor, fake: torch.Tensor,
             cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One update: ``0.5 * (LSGAN real + LSGAN fake)``; returns the two terms (detached).

        ``real`` and ``fake`` may differ in batch size when there is no condition (the
        latent critic of ``vae_old``); a condition applies to both.
        """
        if not self.active:
            zero = real.new_zeros(())
            return zero, zero
        n = real.shape[0]
        batch = torch.cat([self._inputs(real, cond), self._inputs(fake.detach(), cond)])
        logits, _ = self.ddp(batch)
        real_logits, fake_logits = _split(logits, n)
        loss_real, loss_fake = lsgan_d_loss(real_logits, fake_logits)
        self.optimizer.zero_grad(set_to_none=True)
        (0.5 * (loss_real + loss_fake)).backward()
        self.optimizer.step()
        return loss_real.detach(), loss_fake.detach()
