"""The O(N)-memory partial non-local block equals the reference's N x N formulation.

``naive_*`` below is written the way the reference computes it (full affinity, softmax over all
keys, multiply by the clean indicator, L1 renormalise with eps 1e-12), and serves only here.
Every test runs twice: with PyTorch's fused CPU attention kernel and with our chunked loop
(the fallback on other devices and for soft key weights).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from numeric_bounds import attention_bound, check_within, stack_tolerance

from oldphoto_core.arch import partial_nonlocal
from oldphoto_core.arch.partial_nonlocal import (
    PartialNonLocalBlock,
    clean_indicator,
    partial_attention,
)


@pytest.fixture(autouse=True, params=["fused", "chunked"])
def attention_path(request, monkeypatch):
    if request.param == "chunked":
        monkeypatch.setattr(partial_nonlocal, "_fused_kernel", lambda queries: None)
    else:
        assert partial_nonlocal._fused_kernel(torch.zeros(1, dtype=torch.float64)) is not None, \
            "this PyTorch has no fused CPU attention with log-sum-exp"
        monkeypatch.setattr(partial_nonlocal, "FUSED_QUERY_ROWS", 16)  # several calls per item
    return request.param


def naive_attention(theta, phi, g, key_weight):
    f = torch.matmul(theta.transpose(1, 2), phi)          # [B, N, N]
    s = F.softmax(f, dim=2) * key_weight[:, None, :]
    s = F.normalize(s, p=1, dim=2)
    return torch.matmul(s, g.transpose(1, 2)).transpose(1, 2)


def naive_clean(mask, size):
    tmp = 1 - mask
    m = F.interpolate(mask, size, mode="bilinear")
    m[m > 0] = 1.0
    m = 1 - m
    return m * F.interpolate(tmp, size)


def naive_block(block: PartialNonLocalBlock, x, mask):
    b, c, h, w = x.shape
    clean = naive_clean(mask.clone(), (h, w))
    y = naive_attention(block.theta(x).flatten(2), block.phi(x).flatten(2), block.g(x).flatten(2),
                        clean.flatten(1))
    wy = block.res_block(block.W(y.reshape(b, c, h, w)))
    return clean * x + (1 - clean) * wy


def _qkv(b=2, c=8, n=40, scale=1.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(b, c, n, generator=g, dtype=dtype) for _ in range(3)]


def _check_same_attention(ours, ref, theta, phi, g, w, what=""):
    """Two implementations of the same attention: each within the attention rounding bound
    (score inner products, exp, normalisation, value sum) of the exact result."""
    check_within(ours, ref, 2 * attention_bound(theta, phi, g, w), what)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_random_weights_match_naive(dtype):
    theta, phi, g = _qkv(dtype=dtype)
    w = (torch.rand(2, 40, generator=torch.Generator().manual_seed(1)) > 0.3).to(dtype)
    ours = partial_attention(theta, phi, g, w)
    _check_same_attention(ours, naive_attention(theta, phi, g, w), theta, phi, g, w, str(dtype))


@pytest.mark.parametrize("case", ["no_holes", "all_holes", "single_valid_key", "soft",
                                  "one_item_all_holes"])
def test_edge_cases_match_naive(case):
    theta, phi, g = _qkv()
    w = torch.ones(2, 40, dtype=torch.float64)
    if case == "all_holes":
        w.zero_()
    elif case == "single_valid_key":
        w.zero_()
        w[:, 17] = 1
    elif case == "soft":
        w = torch.rand(2, 40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        w[w < 0.2] = 0
    elif case == "one_item_all_holes":
        w[1] = 0
    ours = partial_attention(theta, phi, g, w)
    ref = naive_attention(theta, phi, g, w)
    _check_same_attention(ours, ref, theta, phi, g, w, case)
    if case == "all_holes":
        assert ours.abs().max() == 0


def test_renormalisation_eps_is_reproduced():
    """Clean keys holding < 1e-12 of the softmax mass: the reference shrinks, not renormalises."""
    theta, phi, g = _qkv(b=1, n=12)
    phi[..., 0] = theta[..., 0] * 20  # key 0 (damaged) dominates query 0 by a huge margin
    w = torch.ones(1, 12, dtype=torch.float64)
    w[0, 0] = 0
    ref = naive_attention(theta, phi, g, w)
    ours = partial_attention(theta, phi, g, w)
    mass = F.softmax(theta[0].t() @ phi[0], dim=1)[0, 1:].sum()
    assert mass < 1e-12, "test setup: query 0's clean mass must underflow the eps"
    _check_same_attention(ours, ref, theta, phi, g, w)


@pytest.mark.parametrize("chunk", [1, 7, 40 * 40, 10**9])
def test_chunk_size_does_not_change_result(chunk):
    theta, phi, g = _qkv()
    w = (torch.rand(2, 40, generator=torch.Generator().manual_seed(5)) > 0.5).double()
    ref = partial_attention(theta, phi, g, w, chunk_elements=10**9)
    # other chunks, other matrix-product shapes, other summation orders
    _check_same_attention(partial_attention(theta, phi, g, w, chunk_elements=chunk), ref,
                          theta, phi, g, w, f"chunk {chunk}")


def test_clean_indicator_matches_reference_formula():
    """Bit-exact on any CPU: the same two interpolations; for a mask >= 0 the bilinear value
    is 0 exactly where both formulas keep the nearest sample times 1, elsewhere both give 0."""
    g = torch.Generator().manual_seed(2)
    mask = (torch.rand(2, 1, 37, 53, generator=g) > 0.8).float()
    assert torch.equal(clean_indicator(mask, (9, 13)), naive_clean(mask.clone(), (9, 13)))
    soft = torch.rand(1, 1, 16, 16, generator=g)
    assert torch.equal(clean_indicator(soft, (4, 4)), naive_clean(soft.clone(), (4, 4)))


@pytest.mark.parametrize("hole", ["random", "none", "mostly_holes"])
def test_block_matches_naive_block(hole):
    """Whole block vs the reference formulation. (All-hole and single-key inputs are covered at
    the attention level above: there the attention output is spatially constant and the
    reference's instance norm of a constant map only amplifies rounding noise, in both.)"""
    torch.manual_seed(0)
    block = PartialNonLocalBlock(16).double().eval()
    x = torch.randn(2, 16, 6, 7, dtype=torch.float64)
    mask = torch.zeros(2, 1, 24, 28, dtype=torch.float64)
    if hole == "random":
        mask = (torch.rand(2, 1, 24, 28) > 0.85).double()
    elif hole == "mostly_holes":
        mask.fill_(1)
        mask[:, :, :8, :12] = 0   # a few latent positions at the corner stay clean
    with torch.no_grad():
        ours, ref = block(x, mask), naive_block(block, x, mask)
    # float64 through 1x1 convs, attention and three residual blocks: the stack tolerance
    tol = stack_tolerance(block, ref.abs().max().item(), pixels=6 * 7)
    assert (ours - ref).abs().max().item() <= tol
    if hole == "none":  # clean everywhere: 0 * refined + 1 * x, exactly x
        assert torch.equal(ours, x)


def test_clean_queries_matter():
    """Why every query is computed: the residual blocks spread clean queries into the holes."""
    torch.manual_seed(0)
    block = PartialNonLocalBlock(8).double().eval()
    x = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    mask = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    mask[..., 8:16, 8:16] = 1
    clean = clean_indicator(mask, (6, 6))
    with torch.no_grad():
        full = block(x, mask)
        theta, phi, g = (m(x).flatten(2) for m in (block.theta, block.phi, block.g))
        y = partial_attention(theta, phi, g, clean.flatten(1)) * (clean.flatten(1) < 1)
        holes_only = clean * x + (1 - clean) * block.res_block(block.W(y.view(1, 8, 6, 6)))
    assert (full - holes_only).abs().max() > 1e-3  # an effect of order 0.1, not rounding
