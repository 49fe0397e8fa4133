"""The ground-truth mask: exactly the visible change of the structured layer, nothing else."""

from __future__ import annotations

import pytest
import torch
from numeric_bounds import gamma

from oldphoto_core.degrade import DegradeConfig, degrade


def _visible_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (after - before).abs().amax(dim=1, keepdim=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("channels", [1, 3])
def test_mask_is_the_thresholded_difference_image(photo, structured_only, seed, channels):
    """With only structured damage, out - in is the structured layer's change: the mask must be
    exactly where it exceeds the threshold (ties within float rounding are ignored)."""
    img = photo(channels=channels, height=72, width=56, seed=seed)
    res = degrade(img, seed=seed, config=structured_only)
    change = _visible_change(img, res.image)
    tau = structured_only.mask_threshold
    tie = gamma(4)  # out - in recomputed element-wise from values <= 1: a few roundings
    clear = (change - tau).abs() > tie
    expected = change > tau
    assert torch.equal(res.mask.bool()[clear], expected[clear])
    # Nothing changes outside what was drawn: no stray global op.
    assert change[~res.mask.bool()].max() <= tau + tie


def test_heavy_damage_is_in_the_mask(photo, heavy_damage):
    img = photo(height=96, width=96)
    res = degrade(img, seed=1, config=heavy_damage)
    frac = res.mask.mean().item()
    assert 0.05 < frac < 0.9
    # an exact count / n vs a float32 mean of 0/1 values (exact sum, one division): 1 u
    assert res.params[0]["mask_fraction"] == pytest.approx(frac)
    # The mask covers the drawn damage: every strongly changed pixel is in it.
    strong = _visible_change(img, res.image) > 0.15
    assert strong.any() and res.mask.bool()[strong].all()


def test_no_structured_damage_means_an_empty_mask(photo):
    cfg = DegradeConfig(scratch_count=(0, 0), crack_count=(0, 0), dust_density=(0.0, 0.0),
                        crease_count=(0, 0), hole_count=(0, 0), op_drop_prob=0.0)
    res = degrade(photo(batch=2), seed=3, config=cfg)
    assert res.mask.sum() == 0
    assert not torch.equal(res.image, photo(batch=2))  # unstructured damage still applied


@pytest.mark.parametrize("seed", range(4))
def test_unstructured_and_global_ops_never_enter_the_mask(photo, structured_only, seed):
    """The random streams are independent, so the mask of the full recipe must be the mask of
    the structured stage alone."""
    img = photo(height=64, width=64, seed=seed)
    full = degrade(img, seed=seed, config=structured_only.replace(
        unstructured_ops=DegradeConfig().unstructured_ops, op_drop_prob=0.0,
        grain_sigma_255=(8.0, 8.0), global_blur_prob=1.0))
    alone = degrade(img, seed=seed, config=structured_only)
    assert torch.equal(full.mask, alone.mask)
    assert not torch.equal(full.image, alone.image)


def test_mask_lies_where_the_damage_is_under_the_full_recipe(photo):
    """Under the paper's full recipe (noise, blur, JPEG on top) the mask still marks the pixels
    that changed most."""
    inside, outside = [], []
    for seed in range(6):
        img = photo(height=96, width=96, seed=seed)
        res = degrade(img, seed=seed)
        change = _visible_change(img, res.image)
        m = res.mask.bool()
        if m.any():
            inside.append(change[m].mean())
            outside.append(change[~m].mean())
    assert inside and torch.stack(inside).mean() > 1.5 * torch.stack(outside).mean()


def test_threshold_controls_the_mask(photo, heavy_damage):
    img = photo(height=80, width=80)
    loose = degrade(img, seed=2, config=heavy_damage.replace(mask_threshold=0.0))
    strict = degrade(img, seed=2, config=heavy_damage.replace(mask_threshold=0.3))
    assert torch.equal(loose.image, strict.image)  # the threshold changes only the mask
    assert strict.mask.sum() < loose.mask.sum()
    assert (strict.mask <= loose.mask).all()


def test_visible_mask_drops_the_damage_that_blur_and_noise_hide(photo, heavy_damage):
    """``mask_visible_threshold`` changes only the mask: it keeps the drawn pixels where the
    finished image still differs from the same finish over the undamaged print. Without any
    step after the damage, that is the drawn mask itself; under a heavy blur it is a strict
    subset of it."""
    img = photo(height=80, width=80)
    plain = degrade(img, seed=4, config=heavy_damage)
    visible = degrade(img, seed=4, config=heavy_damage.replace(mask_visible_threshold=0.04))
    assert torch.equal(plain.image, visible.image) and torch.equal(plain.mask, visible.mask)

    blurred = heavy_damage.replace(unstructured_ops=("gaussian_blur", "noise"), op_drop_prob=0.0,
                                   gaussian_blur_sigma=(5.0, 5.0), gaussian_blur_kernels=(7,))
    drawn = degrade(img, seed=4, config=blurred)
    seen = degrade(img, seed=4, config=blurred.replace(mask_visible_threshold=0.04))
    assert torch.equal(drawn.image, seen.image)
    assert (seen.mask <= drawn.mask).all() and 0 < seen.mask.sum() < drawn.mask.sum()
    assert seen.params[0]["mask_fraction"] == pytest.approx(seen.mask.mean().item())


def test_texture_scale_draws_a_crop_at_its_photos_scale(photo, heavy_damage):
    """``texture_scale`` stands in for the image's own short side / reference size: set to
    that value it changes nothing; set to the scale of a 512 px photo, a 64 px crop gets
    defects four times as wide, so more of it is damaged."""
    img = photo(height=64, width=64)
    own = degrade(img, seed=5, config=heavy_damage)
    same = degrade(img, seed=5, config=heavy_damage.replace(texture_scale=64 / 512))
    assert torch.equal(own.image, same.image) and torch.equal(own.mask, same.mask)
    wide = degrade(img, seed=5, config=heavy_damage.replace(
        texture_scale=1.0, hole_count=(0, 0), dust_density=(0.0, 0.0)))
    thin = degrade(img, seed=5, config=heavy_damage.replace(hole_count=(0, 0),
                                                            dust_density=(0.0, 0.0)))
    assert wide.mask.sum() > 2 * thin.mask.sum()
