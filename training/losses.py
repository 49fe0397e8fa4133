"""The paper's loss terms as plain functions (the VGG term is in :mod:`training.vgg`).

Discriminator outputs are lists with one entry per scale (see
:mod:`training.discriminators`); the GAN terms sum over scales, as pix2pixHD and the reference
do, and feature matching weighs layers and scales as they do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kl_loss", "l1_loss", "lsgan_d_loss", "lsgan_g_loss", "feature_matching_loss",
           "class_balance", "balanced_bce", "focal_loss", "detector_loss"]

_FOCAL_FLOOR = 1e-12


def kl_loss(mu: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mu, I)`` from ``N(0, I)`` per latent element: ``mean(mu^2) / 2``.

    The VAEs of the reference (after MUNIT) fix the posterior's variance to one and sample
    ``z = mu + eps`` with ``eps ~ N(0, I)``; the KL then reduces to half the squared mean
    (the reference's term is ``mean(mu^2)``, i.e. twice this, at weight 1).

    Shape: any -> scalar.
    """
    return mu.pow(2).mean() * 0.5


def l1_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (``a``, ``b`` of one shape) -> scalar."""
    return (a - b).abs().mean()


def lsgan_d_loss(real: list[torch.Tensor], fake: list[torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares discriminator terms ``(sum_s mean((D_s(real)-1)^2), sum_s mean(D_s(fake)^2))``.

    Args:
        real, fake: per-scale logits of real and generated inputs.
    """
    loss_real = sum((r - 1).pow(2).mean() for r in real)
    loss_fake = sum(f.pow(2).mean() for f in fake)
    return loss_real, loss_fake  # type: ignore[return-value]


def lsgan_g_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares generator term ``sum_s mean((D_s(fake)-1)^2)``."""
    return sum((f - 1).pow(2).mean() for f in fake)  # type: ignore[return-value]


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]
                          ) -> torch.Tensor:
    """Discriminator feature matching (pix2pixHD): L1 between the discriminator's hidden
    features of generated and real inputs, each layer weighted ``4 / L`` (L hidden layers per
    scale) and each scale ``1 / S`` (S scales). Real features are treated as constants.

    Args:
        fake, real: per scale, the list of hidden feature maps.
    """
    scales = len(fake)
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real, strict=True):
        w = 4.0 / len(f_scale) / scales
        for f, r in zip(f_scale, r_scale, strict=True):
            total = total + w * l1_loss(f, r.detach())
    return total


def class_balance(mask: torch.Tensor) -> torch.Tensor:
    """Eq. 12: ``alpha = |S-| / |S|``, the share of negative (intact) pixels, per image.

    Scratches cover a few percent of a photo, so positives get the large weight ``alpha`` and
    negatives ``1 - alpha`` (the class-balanced cross-entropy of HED).

    Shape: ``[B, 1, H, W]`` in {0, 1} -> ``[B, 1, 1, 1]``.
    """
    return 1.0 - mask.mean(dim=(1, 2, 3), keepdim=True)


def balanced_bce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 11: ``-mean[alpha s log p + (1 - alpha)(1 - s) log(1 - p)]`` with ``p = sigmoid(y)``.

    Computed from logits (``log p = logsigmoid(y)``, ``log(1-p) = logsigmoid(-y)``) so that
    confident predictions do not overflow.

    Shape: logits and mask ``[B, 1, H, W]`` -> scalar.
    """
    alpha = class_balance(mask)
    pos = alpha * mask * F.logsigmoid(logits)
    neg = (1 - alpha) * (1 - mask) * F.logsigmoid(-logits)
    return -(pos + neg).mean()


def focal_loss(logits: torch.Tensor, mask: torch.Tensor, gamma: float = 0.2,
               alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 13-14: ``-mean[a_t (1 - p_t)^gamma log p_t]``, ``p_t`` the probability of the true
    class and ``a_t`` its class weight (``alpha`` for scratches, ``1 - alpha`` for intact
    pixels; 1 when ``alpha`` is None).

    Down-weights pixels already classified well (``p_t -> 1``), so the hard ones (thin
    scratch edges, scratch-like texture) drive learning; the class weights are those of
    eq. 11-12, as in the alpha-balanced focal loss of Lin et al.

    Shape: logits and mask ``[B, 1, H, W]``, alpha broadcastable (``[B, 1, 1, 1]``) -> scalar.
    """
    log_pt = mask * F.logsigmoid(logits) + (1 - mask) * F.logsigmoid(-logits)
    # 1 - p_t via expm1 (exact near p_t = 1), floored: d/dx x^gamma is infinite at x = 0
    one_minus = (-torch.expm1(log_pt)).clamp_min(_FOCAL_FLOOR)
    term = one_minus.pow(gamma) * log_pt
    if alpha is not None:
        term = term * (alpha * mask + (1 - alpha) * (1 - mask))
    return -term.mean()


def detector_loss(logits: torch.Tensor, mask: torch.Tensor, *, gamma: float = 0.2,
                  beta: float = 10.0) -> dict[str, torch.Tensor]:
    """Eq. 15: ``L = L_CE + beta * L_focal`` of the scratch detector, both terms weighted by
    the class balance ``alpha`` of eq. 12 (scratches are a few percent of the pixels; an
    unweighted focal term at ``beta = 10`` would outweigh the balancing of eq. 11 tenfold).

    Returns:
        ``{"ce": L_CE, "focal": L_focal, "total": L}`` (scalars).
    """
    ce = balanced_bce(logits, mask)
    focal = focal_loss(logits, mask, gamma, class_balance(mask))
    return {"ce": ce, "focal": focal, "total": ce + beta * focal}
