"""Strip-wise execution equals the plain networks (instance norm over the whole map).

The two paths compute the same function and differ only in summation order (convolutions in
strips, instance-norm statistics in float64 sums), so they are compared in float64, within
``stack_tolerance`` (about 1e-9 of the output's scale, derived from the layers' accumulation
lengths): that holds on any CPU, while a wrong halo, padding or statistic moves outputs by
1e-3 or more of their scale. The runner itself is dtype-agnostic; the float32 pipeline with
Winograd strips is compared in ``tests/pipeline/test_inputs.py``.
"""

from __future__ import annotations

import pytest
import torch
from numeric_bounds import stack_tolerance

from oldphoto_core.arch import (
    OldPhotoVAE,
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
    ScratchUNet,
)
from oldphoto_core.runtime.strips import run_tiled, tiled_runner


def _assert_same_function(net: torch.nn.Module, ours: torch.Tensor, ref: torch.Tensor,
                          what: str) -> None:
    assert ours.dtype == ref.dtype == torch.float64
    scale = ref.abs().max().item()
    tol = stack_tolerance(net, scale, pixels=max(ref.shape[-2] * ref.shape[-1] * 16, 1))
    err = (ours - ref).abs().max().item()
    assert err <= tol, f"{what}: strips differ by {err:.3g} (tolerance {tol:.3g})"


@pytest.fixture(scope="module")
def vae(synth, manifests) -> OldPhotoVAE:
    """The published VAE configuration with the kit's synthetic VAE_A weights, in float64."""
    net = OldPhotoVAE().eval()
    net.load_state_dict(synth("manifests/vae_a_quality.json", 0))
    return net.double()


def test_vae_at_the_published_width(vae: OldPhotoVAE) -> None:
    """The published 64-channel VAE, a few rows per strip (what a scan larger than memory
    gets; the strip logic does not depend on the image size, so a 160x200 image suffices)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 160, 200, generator=g, dtype=torch.float64) * 2 - 1
    runner = tiled_runner(strip_elements=1 << 17)   # 10 rows of a 64-channel, 200-wide map
    with torch.inference_mode():
        z = vae.encode(image)
        _assert_same_function(vae.encoder, vae.encode(image, runner), z, "encoder")
        _assert_same_function(vae.decoder, vae.decode(z, runner), vae.decode(z), "decoder")


@pytest.mark.parametrize("strip", [1, 700, 1 << 20])
@pytest.mark.parametrize("size", [(13, 9), (10, 11)])
def test_strip_sizes_and_odd_borders(size, strip) -> None:
    torch.manual_seed(0)
    vae = OldPhotoVAE(channels=8).double().eval()
    x = torch.rand(2, 3, 4 * size[0], 4 * size[1], dtype=torch.float64) * 2 - 1
    runner = tiled_runner(strip_elements=strip)
    with torch.inference_mode():
        z = vae.encode(x)
        _assert_same_function(vae.encoder, vae.encode(x, runner), z, "encoder")
        _assert_same_function(vae.decoder, vae.decode(z, runner), vae.decode(z), "decoder")


def test_mappings_tiled_equal_untiled() -> None:
    torch.manual_seed(0)
    z = torch.randn(1, 64, 40, 32, dtype=torch.float64)
    mask = torch.zeros(1, 1, 160, 128, dtype=torch.float64)
    mask[..., 40:60, :] = 1
    mask[..., :, 80:86] = 1
    runner = tiled_runner(strip_elements=5000)   # 3 rows of a 48-channel map per strip
    with torch.inference_mode():
        quality = QualityMapping(width=48, n_blocks=2).double().eval()
        _assert_same_function(quality, quality(z, runner), quality(z), "quality")
        scratch = ScratchMapping(width=48, n_blocks=2).double().eval()
        _assert_same_function(scratch, scratch(z, mask, runner), scratch(z, mask), "scratch")
        hr = PatchAttentionMapping(width=48).double().eval()
        _assert_same_function(hr, hr(z, mask, runner), hr(z, mask), "hr")


def test_unsupported_layers_run_whole_and_input_is_untouched() -> None:
    torch.manual_seed(0)
    unet = ScratchUNet(base=8).double().eval()  # BatchNorm, BlurPool, Upsample: run as they are
    x = torch.randn(1, 1, 64, 48, dtype=torch.float64)
    before = x.clone()
    seq = torch.nn.Sequential(torch.nn.InstanceNorm2d(1), torch.nn.ReLU(), unet.first)
    with torch.inference_mode():
        _assert_same_function(seq, run_tiled(seq, x, strip_elements=100), seq(before), "unet")
    assert torch.equal(x, before)
