"""The spectral-norm convolution: the reference's eval-mode weight, cache invalidation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oldphoto_core.arch.blocks import SpectralNormConv2d


def _expected(conv: SpectralNormConv2d, x: torch.Tensor) -> torch.Tensor:
    w = conv.weight_orig
    sigma = torch.dot(conv.weight_u, torch.mv(w.reshape(w.shape[0], -1), conv.weight_v))
    return F.conv2d(x, w / sigma, conv.bias, 1, conv.padding)


def test_eval_weight_is_weight_orig_over_stored_sigma():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(conv(x), _expected(conv, x))


def test_cache_follows_new_weights():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        first = conv(x)
        sd = {k: v * 2 if k == "weight_orig" else v for k, v in conv.state_dict().items()}
        sd["weight_u"] = torch.nn.functional.normalize(torch.randn(4), dim=0)
        conv.load_state_dict(sd)
        second = conv(x)
    assert not torch.equal(first, second)
    assert torch.equal(second, _expected(conv, x))


def test_inference_tensors_are_fine():
    """ComfyUI runs nodes under inference_mode: the cache must not need version counters."""
    with torch.inference_mode():
        conv = SpectralNormConv2d(3, 4, 3, padding=1).eval()
        x = torch.randn(1, 3, 8, 8)
        assert torch.equal(conv(x), conv(x))
