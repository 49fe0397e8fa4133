"""Training-side forwards compute the engine's functions (so training optimises what runs)."""

from __future__ import annotations

import torch

from oldphoto_core.arch import OldPhotoVAE, PatchAttentionMapping, ScratchMapping
from training.discriminators import MultiScaleDiscriminator, latent_discriminator
from training.nets import MappingTrainer, VAETrainer, init_weights


def _randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return net


def test_differentiable_partial_nonlocal_equals_the_engine_block():
    """Same function as the engine's O(N) inference kernel: float64 leaves only rounding
    (~1e-15 relative per operation over a few hundred operations)."""
    net = _randomised(ScratchMapping(latent_channels=4, width=8, n_blocks=1), 0).double()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 10, 12, generator=g, dtype=torch.float64)
    mask = (torch.rand(2, 1, 40, 48, generator=g) > 0.85).double()
    mask[1] = 0                                        # an image without damage
    with torch.no_grad():
        engine = net(z, mask)
        ours = MappingTrainer(net)(z, mask)
    assert torch.allclose(ours, engine, rtol=1e-9, atol=1e-9 * engine.abs().max().item())


def test_differentiable_partial_nonlocal_trains_every_parameter():
    net = _randomised(ScratchMapping(latent_channels=4, width=8, n_blocks=1), 2)
    z = torch.randn(1, 4, 6, 6)
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., :8, :] = 1
    MappingTrainer(net)(z, mask).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.NL.theta.weight.grad.abs().sum() > 0


def test_patch_attention_mapping_trains_through_the_engine_forward():
    net = _randomised(PatchAttentionMapping(latent_channels=4, width=8), 3)
    z = torch.randn(1, 4, 16, 16)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :40, :40] = 1
    out = MappingTrainer(net)(z, mask)
    with torch.no_grad():
        assert torch.allclose(out, net(z, mask), atol=1e-5)
    out.square().mean().backward()
    assert net.NL_scale_1.F_Combine.weight.grad.abs().sum() > 0


def test_vae_trainer_decodes_a_noisy_latent_mean():
    vae = OldPhotoVAE(channels=4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    mu, recon = VAETrainer(vae)(x)
    torch.manual_seed(0)
    expected_mu = vae.encode(x)
    noise = torch.randn_like(expected_mu)
    assert torch.equal(mu, expected_mu)
    assert torch.allclose(recon, vae.decode(expected_mu + noise))


def test_init_follows_pix2pixhd():
    d = MultiScaleDiscriminator(3, 64)
    init_weights(d)
    w = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002


def test_discriminators_return_logits_and_hidden_features_per_scale():
    d = MultiScaleDiscriminator(6, 8, spectral=True)
    logits, feats = d(torch.randn(2, 6, 32, 32))
    assert len(logits) == len(feats) == 2
    assert [f.shape[1] for f in feats[0]] == [8, 16, 32, 64] and logits[0].shape[1] == 1
    assert logits[1].shape[-1] < logits[0].shape[-1]     # the second scale sees half the size
    lat_logits, lat_feats = latent_discriminator(8, 8)(torch.randn(2, 8, 8, 8))
    assert len(lat_logits) == 1 and len(lat_feats[0]) == 4
