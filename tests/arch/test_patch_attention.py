"""Patch attention: the corner cases outside the parity cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oldphoto_core.arch.patch_attention import PatchAttention, damaged_latent_mask


def _block(p=2, c=4):
    torch.manual_seed(0)
    return PatchAttention(c, patch_size=p).eval()


def test_no_damaged_patch_passes_features_unchanged():
    blk = _block()
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(blk.compose(x, torch.zeros(1, 1, 8, 8)), x)


def test_all_patches_damaged_keeps_features_instead_of_failing():
    blk = _block()
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(blk.compose(x, torch.ones(1, 1, 8, 8)), x)


def test_damaged_patch_is_replaced_by_most_similar_clean_patch():
    blk = _block(p=2, c=1)
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0:2, 0:2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])      # damaged patch
    x[..., 0:2, 2:4] = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])     # poor match
    x[..., 2:4, 0:2] = torch.tensor([[1.1, 2.0], [3.0, 4.2]])      # best match (cosine)
    x[..., 2:4, 2:4] = torch.tensor([[4.0, 3.0], [2.0, 1.0]])
    m = torch.zeros(1, 1, 4, 4)
    m[..., 0:2, 0:2] = 1
    out = blk.compose(x, m)
    assert torch.equal(out[..., 0:2, 0:2], x[..., 2:4, 0:2])
    assert torch.equal(out[..., 2:, :], x[..., 2:, :])


def test_ragged_border_is_zero_when_a_patch_is_selected():
    blk = _block(p=4, c=2)
    x = torch.randn(1, 2, 10, 9)
    m = torch.zeros(1, 1, 10, 9)
    m[..., :4, :4] = 1
    out = blk.compose(x, m)
    assert out[..., 8:, :].abs().max() == 0 and out[..., :, 8:].abs().max() == 0


def test_batch_items_select_their_own_patches():
    blk = _block()
    x = torch.randn(2, 4, 8, 8)
    m = torch.zeros(2, 1, 8, 8)
    m[0, :, :2, :2] = 1
    m[1, :, 4:, 4:] = 1
    batched = blk.compose(x, m)
    # the output copies input patches; only the choice of patch (an argmax of similarities)
    # could depend on summation order, and no two candidates here tie within float rounding
    for i in range(2):
        assert torch.equal(batched[i:i + 1], blk.compose(x[i:i + 1], m[i:i + 1]))


def test_damaged_latent_mask_is_bilinear_then_binary():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5, 5] = 1
    lat = damaged_latent_mask(mask, (4, 4))
    ref = F.interpolate(mask, (4, 4), mode="bilinear")
    ref[ref > 0] = 1
    assert torch.equal(lat, ref)

