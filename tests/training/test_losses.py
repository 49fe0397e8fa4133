"""Each loss term against a value computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (
    balanced_bce,
    class_balance,
    detector_loss,
    feature_matching_loss,
    focal_loss,
    kl_loss,
    l1_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)

t = torch.tensor


def test_kl_is_half_the_mean_square_of_the_latent_mean():
    # KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 per element: (1 + 4 + 0 + 9) / 4 / 2
    assert kl_loss(t([1.0, -2.0, 0.0, 3.0])).item() == pytest.approx(1.75)


def test_l1_is_the_mean_absolute_difference():
    assert l1_loss(t([0.0, 1.0]), t([1.0, 3.0])).item() == pytest.approx(1.5)


def test_lsgan_discriminator_terms_sum_over_scales():
    real = [t([1.0, 0.0]), t([3.0])]     # ((0)^2 + (-1)^2) / 2 + (2)^2 = 0.5 + 4
    fake = [t([0.0, 2.0]), t([-1.0])]    # (0 + 4) / 2 + 1 = 3
    loss_real, loss_fake = lsgan_d_loss(real, fake)
    assert loss_real.item() == pytest.approx(4.5)
    assert loss_fake.item() == pytest.approx(3.0)


def test_lsgan_generator_term_targets_one():
    assert lsgan_g_loss([t([0.0, 2.0]), t([1.0])]).item() == pytest.approx(1.0 + 0.0)


def test_feature_matching_weighs_layers_and_scales_as_pix2pixhd():
    # 2 scales x 2 hidden layers: each layer weighs 4 / 2 / 2 = 1
    fake = [[t([1.0]), t([2.0])], [t([0.0]), t([0.0])]]
    real = [[t([0.0]), t([0.0])], [t([1.0]), t([3.0])]]
    assert feature_matching_loss(fake, real).item() == pytest.approx((1 + 2) + (1 + 3))
    # 1 scale x 4 layers: 4 / 4 / 1 = 1 each
    fake4 = [[t([1.0]), t([1.0]), t([1.0]), t([1.0])]]
    real4 = [[t([0.0]), t([0.5]), t([1.0]), t([3.0])]]
    assert feature_matching_loss(fake4, real4).item() == pytest.approx(1 + 0.5 + 0 + 2)


def test_feature_matching_treats_real_features_as_constants():
    f = t([1.0], requires_grad=True)
    r = t([0.0], requires_grad=True)
    feature_matching_loss([[f]], [[r]]).backward()
    assert f.grad is not None and r.grad is None


def _pixel_case():
    """One 2x2 image: a scratch at (0, 0); logits 0, 0, ln 3, -ln 3 (p = .5, .5, .75, .25)."""
    mask = t([[[[1.0, 0.0], [0.0, 0.0]]]])
    logits = t([[[[0.0, 0.0], [math.log(3), -math.log(3)]]]])
    return logits, mask


def test_class_balance_is_the_negative_share_per_image():       # eq. 12
    masks = torch.zeros(2, 1, 2, 2)
    masks[0, 0, 0, 0] = 1
    masks[1] = 1
    assert class_balance(masks).flatten().tolist() == pytest.approx([0.75, 0.0])


def test_balanced_cross_entropy_by_hand():                        # eq. 11
    logits, mask = _pixel_case()
    alpha = 0.75
    per_pixel = [alpha * math.log(0.5),          # scratch, p = .5
                 (1 - alpha) * math.log(0.5),    # intact, p = .5
                 (1 - alpha) * math.log(0.25),   # intact, p = .75 -> log(1 - p)
                 (1 - alpha) * math.log(0.75)]   # intact, p = .25
    expected = -sum(per_pixel) / 4
    assert balanced_bce(logits, mask).item() == pytest.approx(expected, rel=1e-6)


def test_focal_term_by_hand():                                    # eq. 13-14
    logits, mask = _pixel_case()
    gamma = 0.2
    p_true = [0.5, 0.5, 0.25, 0.75]   # probability given to each pixel's true class
    weight = [0.75, 0.25, 0.25, 0.25]  # alpha for the scratch, 1 - alpha for intact pixels
    plain = -sum((1 - p) ** gamma * math.log(p) for p in p_true) / 4
    weighted = -sum(w * (1 - p) ** gamma * math.log(p)
                    for w, p in zip(weight, p_true, strict=True)) / 4
    assert focal_loss(logits, mask, gamma).item() == pytest.approx(plain, rel=1e-6)
    alpha = class_balance(mask)
    assert focal_loss(logits, mask, gamma, alpha).item() == pytest.approx(weighted, rel=1e-6)


def test_detector_loss_is_ce_plus_beta_focal():                  # eq. 15
    logits, mask = _pixel_case()
    out = detector_loss(logits, mask, gamma=0.2, beta=10.0)
    ce = balanced_bce(logits, mask).item()
    focal = focal_loss(logits, mask, 0.2, class_balance(mask)).item()
    assert out["ce"].item() == pytest.approx(ce)
    assert out["focal"].item() == pytest.approx(focal)
    assert out["total"].item() == pytest.approx(ce + 10 * focal, rel=1e-6)


def test_focal_with_gamma_zero_is_plain_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 4, 4, generator=g)
    mask = (torch.rand(2, 1, 4, 4, generator=g) > 0.7).float()
    plain = F.binary_cross_entropy_with_logits(logits, mask)
    assert focal_loss(logits, mask, 0.0).item() == pytest.approx(plain.item(), rel=1e-6)


def test_detector_loss_and_gradient_stay_finite_for_confident_logits():
    logits = t([[[[200.0, -200.0], [30.0, -30.0]]]], requires_grad=True)
    mask = t([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = detector_loss(logits, mask)
    out["total"].backward()
    assert math.isfinite(out["total"].item())
    assert torch.isfinite(logits.grad).all()
