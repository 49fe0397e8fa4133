"""Strip-wise execution equals the plain networks (instance norm over the whole map)."""

from __future__ import annotations

import pytest
import torch

from oldphoto_core.arch import (
    OldPhotoVAE,
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
    ScratchUNet,
)
from oldphoto_core.tiling import run_tiled, tiled_runner

TOL = 1e-4


@pytest.fixture(scope="module")
def vae(synth, manifests) -> OldPhotoVAE:
    """The published VAE configuration with the kit's synthetic VAE_A weights."""
    net = OldPhotoVAE().eval()
    net.load_state_dict(synth("manifests/vae_a_quality.json", 0))
    return net


def test_vae_on_a_megapixel_image(vae: OldPhotoVAE) -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 1000, 1000, generator=g) * 2 - 1
    with torch.inference_mode():
        z = vae.encode(image)
        z_tiled = vae.encode(image, tiled_runner(strip_elements=1 << 22))
        assert (z - z_tiled).abs().max() <= TOL
        y = vae.decode(z)
        y_tiled = vae.decode(z, tiled_runner(strip_elements=1 << 22))
        assert (y - y_tiled).abs().max() <= TOL


@pytest.mark.parametrize("strip", [1, 700, 1 << 20])
@pytest.mark.parametrize("size", [(37, 29), (40, 41)])
def test_strip_sizes_and_odd_borders(size, strip) -> None:
    torch.manual_seed(0)
    vae = OldPhotoVAE(channels=8).eval()
    x = torch.rand(2, 3, 4 * size[0], 4 * size[1]) * 2 - 1
    with torch.inference_mode():
        z = vae.encode(x)
        assert torch.allclose(vae.encode(x, tiled_runner(strip_elements=strip)), z, atol=TOL,
                              rtol=0)
        assert torch.allclose(vae.decode(z, tiled_runner(strip_elements=strip)), vae.decode(z),
                              atol=TOL, rtol=0)


def test_mappings_tiled_equal_untiled() -> None:
    torch.manual_seed(0)
    z = torch.randn(1, 64, 62, 50)
    mask = torch.zeros(1, 1, 248, 200)
    mask[..., 40:60, :] = 1
    mask[..., :, 120:126] = 1
    runner = tiled_runner(strip_elements=5000)
    with torch.inference_mode():
        quality = QualityMapping(width=48, n_blocks=2).eval()
        assert (quality(z) - quality(z, runner)).abs().max() <= TOL
        scratch = ScratchMapping(width=48, n_blocks=2).eval()
        assert (scratch(z, mask) - scratch(z, mask, runner)).abs().max() <= TOL
        hr = PatchAttentionMapping(width=48).eval()
        assert (hr(z, mask) - hr(z, mask, runner)).abs().max() <= TOL


def test_unsupported_layers_run_whole_and_input_is_untouched() -> None:
    torch.manual_seed(0)
    unet = ScratchUNet(base=8).eval()        # BatchNorm, BlurPool, Upsample: run as they are
    x = torch.randn(1, 1, 64, 48)
    before = x.clone()
    seq = torch.nn.Sequential(torch.nn.InstanceNorm2d(1), torch.nn.ReLU(), unet.first)
    with torch.inference_mode():
        assert torch.allclose(run_tiled(seq, x, strip_elements=100), seq(before), atol=TOL)
    assert torch.equal(x, before)
