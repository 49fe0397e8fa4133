"""The spectral-norm convolution: the reference's eval-mode weight, cache invalidation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from numeric_bounds import check_within, instance_norm_bound, stack_tolerance

from oldphoto_core.arch.blocks import SpectralNormConv2d
from oldphoto_core.runtime.numerics import use_precision


def _expected(conv: SpectralNormConv2d, x: torch.Tensor) -> torch.Tensor:
    """The same operations as the layer's eval forward (``dot(u, W v)``, a division, the same
    ``F.conv2d`` call), so the comparisons below are bit-exact on any CPU."""
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
    from oldphoto_core.runtime.in_place import instance_norm_
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 17, 23, generator=g, dtype=torch.float64) * 3 + 5  # a mean offset
    ref = F.instance_norm(x)
    y = x.clone()
    assert instance_norm_(y) is y
    # two float64 implementations, each within the instance-norm rounding bound
    check_within(y, ref, 2 * instance_norm_bound(x), "float64")
    # float32 against the float64 result of the same float32 input: ours' bound + the ref's
    xf = x.float()
    check_within(instance_norm_(xf.clone()), F.instance_norm(xf.double()),
                 instance_norm_bound(xf) + instance_norm_bound(xf, dtype=torch.float64),
                 "float32")
    # channels-last (not contiguous in NCHW order) takes PyTorch's kernel, still in place;
    # against PyTorch's contiguous kernel, which sums in another order: twice the bound
    cl = xf.contiguous(memory_format=torch.channels_last)
    check_within(instance_norm_(cl), F.instance_norm(xf), 2 * instance_norm_bound(xf),
                 "channels-last")


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
        with use_precision("direct"):     # PyTorch's own layers: the same operations, same bits
            assert torch.equal(block(x), x + block.conv_block(x))
    # folded padding and in-place norms sum in another order: float64 stack tolerance
    tol = stack_tolerance(block, layers.abs().max().item(), pixels=9 * 11)
    assert (fused - layers).abs().max().item() <= tol


def test_resnet_block_keeps_its_input_in_inference():
    from oldphoto_core.arch.blocks import ResnetBlock
    torch.manual_seed(0)
    block = ResnetBlock(4).eval()
    x = torch.randn(1, 4, 6, 6)
    before = x.clone()
    with torch.inference_mode():
        block(x)
    assert torch.equal(x, before)


def _stacks():
    from oldphoto_core.arch.mapping import QualityMapping
    from oldphoto_core.arch.vae import OldPhotoVAE
    torch.manual_seed(0)
    vae = OldPhotoVAE(channels=8).double().eval()
    mapping = QualityMapping(latent_channels=8, width=16, n_blocks=3).double().eval()
    return {"encoder": (vae.encoder, (1, 3, 24, 20)), "decoder": (vae.decoder, (2, 8, 6, 5)),
            "mapping": (mapping.model, (1, 8, 7, 9))}


@pytest.mark.parametrize("name", ["encoder", "decoder", "mapping"])
def test_inference_walk_computes_the_stack(name):
    """run_stack's in-place walk (folded padding, in-place norms, rotating block buffers) is
    the stack's own forward, and leaves the caller's input alone."""
    from oldphoto_core.arch.blocks import run_stack
    stack, shape = _stacks()[name]
    x = torch.randn(*shape, dtype=torch.float64)
    before = x.clone()
    with torch.no_grad():
        with use_precision("direct"):
            ref = stack(x)
        ours = run_stack(stack, x)
    assert torch.equal(x, before)
    # in-place norms sum in another order than F.instance_norm: float64 stack tolerance
    tol = stack_tolerance(stack, ref.abs().max().item(), pixels=shape[-2] * shape[-1] * 16)
    assert (ours - ref).abs().max().item() <= tol


def test_block_chain_reuses_its_buffers(monkeypatch):
    """Four wide residual blocks: from the third on, the convolutions write into maps the
    chain made earlier instead of fresh ones (each fresh 40 MB map costs page faults)."""
    import oldphoto_core.runtime.convolution as conv_mod
    from oldphoto_core.arch.blocks import ResnetBlock, run_stack
    real = conv_mod.winograd_conv3x3
    seen_out, made = [], []

    def spy(*args, out=None, **kwargs):
        seen_out.append(None if out is None else out.data_ptr())
        y = real(*args, out=out, **kwargs)
        made.append(y.data_ptr())
        return y

    monkeypatch.setattr(conv_mod, "winograd_conv3x3", spy)
    torch.manual_seed(0)
    chain = torch.nn.Sequential(*(ResnetBlock(256) for _ in range(4))).eval()
    x = torch.randn(1, 256, 32, 32)
    with torch.no_grad():
        ref = chain(x)  # each block's own inference forward, every conv into a fresh map
        seen_out.clear()
        made.clear()
        ours = run_stack(chain, x)
    assert len(made) == 8
    assert seen_out[1] == made[0]                  # the 2nd conv overwrites the 1st's output
    assert seen_out[4] in made[:4] and seen_out[6] in made[:6]   # blocks 3 and 4: reused
    assert len(set(made)) == 2                     # two buffers for the whole chain
    assert x.data_ptr() not in made
    # the same Winograd products of the same shapes, only written into other buffers: the
    # same bits on any CPU (an aliasing bug would read overwritten maps)
    assert torch.equal(ours, ref)


def test_hooks_see_the_plain_forward():
    from oldphoto_core.arch.blocks import run_stack
    stack, shape = _stacks()["mapping"]
    seen = []
    handle = stack[0].register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    try:
        with torch.no_grad():
            run_stack(stack, torch.randn(*shape, dtype=torch.float64))
    finally:
        handle.remove()
    assert len(seen) == 1
