"""Training-side views of the engine's networks: initialisation and differentiable forwards.

The networks of :mod:`oldphoto_core.arch` are used unchanged (their parameters are what gets
exported). Two things training needs on top:

* :class:`VAETrainer` returns the latent mean *and* the reconstruction of a noisy latent (the
  KL term needs the first, eq. 1);
* :class:`MappingTrainer` computes the scratch mapping's partial non-local block with plain
  differentiable tensor operations. The engine's block is an inference kernel (chunked,
  in-place softmax, O(N) memory) that autograd cannot differentiate; the function here is the
  same one (checked against it in the tests) with the full ``N x N`` affinity per image, which at
  the 256 px training crops is 4096 x 4096.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto_core.arch import (
    OldPhotoVAE,
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
)
from oldphoto_core.arch.partial_nonlocal import PartialNonLocalBlock, clean_indicator

__all__ = ["init_weights", "VAETrainer", "MappingTrainer", "partial_nonlocal_forward"]

_RENORM_EPS = 1e-12  # the reference's F.normalize(p=1) eps, which the engine reproduces


def init_weights(module: nn.Module) -> None:
    """The reference's initialisation (pix2pixHD ``weights_init``): convolution weights
    ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02) with zero shifts. Covers plain, transposed,
    spectrally normalised (``weight_orig``) and parametrized convolutions."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if hasattr(m, "parametrizations"):
                    m.parametrizations.weight.original.normal_(0.0, 0.02)
                else:
                    m.weight.normal_(0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.normal_(1.0, 0.02)
                m.bias.zero_()
            elif isinstance(getattr(m, "weight_orig", None), nn.Parameter):
                m.weight_orig.normal_(0.0, 0.02)


class VAETrainer(nn.Module):
    """``x -> (mu, decode(mu + eps))`` with ``eps ~ N(0, I)`` from the global RNG.

    The reduced VAE of the reference: the encoder gives the posterior mean, the variance is
    fixed to one, so sampling adds unit Gaussian noise before decoding.

    Shape: ``[B, 3, H, W]`` -> (``[B, c, H/4, W/4]``, ``[B, 3, H, W]``).
    """

    def __init__(self, vae: OldPhotoVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.vae.encode(x)
        return mu, self.vae.decode(mu + torch.randn_like(mu))


def partial_nonlocal_forward(block: PartialNonLocalBlock, x: torch.Tensor,
                             mask: torch.Tensor) -> torch.Tensor:
    """The partial non-local block (eq. 7-10), differentiable.

    For each image: ``s = softmax(theta^T phi)`` over all positions, weights
    ``a_ij = s_ij w_j / max(sum_k s_ik w_k, 1e-12)`` with ``w`` the clean indicator, attention
    ``y = g a^T``, then ``W``, three residual blocks, and the fusion that keeps ``x`` where the
    photo is clean.

    Shape: ``x [B, C, h, w]``, ``mask [B, 1, H, W]`` (image resolution, 1 = scratch) ->
    ``[B, C, h, w]``.
    """
    b, c, h, w = x.shape
    clean = clean_indicator(mask.to(x.dtype), (h, w))
    theta = F.conv2d(x, block.theta.weight, block.theta.bias).flatten(2)
    phi = F.conv2d(x, block.phi.weight, block.phi.bias).flatten(2)
    g = F.conv2d(x, block.g.weight, block.g.bias).flatten(2)
    weights = clean.flatten(1)
    ys = []
    for i in range(b):
        s = torch.softmax(theta[i].t() @ phi[i], dim=1)                 # [N, N]
        num = s * weights[i][None, :]
        a = num / num.sum(dim=1, keepdim=True).clamp_min(_RENORM_EPS)
        ys.append(g[i] @ a.t())                                         # [C, N]
    y = torch.stack(ys).view(b, c, h, w)
    refined = block.res_block(F.conv2d(y, block.W.weight, block.W.bias))
    return refined * (1 - clean) + clean * x


class MappingTrainer(nn.Module):
    """``(latent, mask) -> mapped latent`` for any of the three mapping networks.

    ``mask`` (image resolution, 1 = scratch) is ignored by the quality mapping. The exported
    weights are ``self.net``'s.
    """

    def __init__(self, net: QualityMapping | ScratchMapping | PatchAttentionMapping) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        net = self.net
        if isinstance(net, QualityMapping):
            return net(z)
        if mask is None:
            raise ValueError(f"{type(net).__name__} needs a scratch mask")
        if isinstance(net, ScratchMapping):
            x = partial_nonlocal_forward(net.NL, net.before_NL(z), mask)
            return net.after_NL(x)
        return net(z, mask)
