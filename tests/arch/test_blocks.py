"""The spectral-norm convolution: the reference's eval-mode weight, cache invalidation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oldphoto_core.arch.blocks import SpectralNormConv2d
from oldphoto_core.numerics import use_precision


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


def test_in_place_instance_norm_matches_pytorch():
    from oldphoto_core.arch.blocks import instance_norm_
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 17, 23, generator=g, dtype=torch.float64) * 3 + 5  # a mean offset
    ref = F.instance_norm(x)
    y = x.clone()
    assert instance_norm_(y) is y
    assert torch.allclose(y, ref, atol=1e-12)
    xf = x.float()
    assert (instance_norm_(xf.clone()) - ref).abs().max() < 5e-6
    # channels-last (not contiguous in NCHW order) takes PyTorch's kernel, still in place
    cl = xf.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(instance_norm_(cl), F.instance_norm(xf), atol=1e-5)


@pytest.mark.parametrize("dilation", [1, 2])
def test_resnet_block_inference_path_equals_its_layers(dilation):
    """The fused inference forward computes what the Sequential of its layers computes."""
    from oldphoto_core.arch.blocks import ResnetBlock
    torch.manual_seed(0)
    block = ResnetBlock(8, dilation=dilation).double().eval()
    x = torch.randn(2, 8, 9, 11, dtype=torch.float64) * 2 + 1
    layers = x + block.conv_block(x)   # grad mode: the plain layer by layer forward
    with torch.no_grad():
        fused = block(x)
        with use_precision("direct"):     # PyTorch's own layers, bit for bit
            assert torch.equal(block(x), x + block.conv_block(x))
    assert torch.allclose(fused, layers, atol=1e-12)


def test_resnet_block_keeps_its_input_in_inference():
    from oldphoto_core.arch.blocks import ResnetBlock
    torch.manual_seed(0)
    block = ResnetBlock(4).eval()
    x = torch.randn(1, 4, 6, 6)
    before = x.clone()
    with torch.inference_mode():
        block(x)
    assert torch.equal(x, before)
