"""``vae_old``: VAE_1, the old-photo VAE (eq. 1-4).

Each step reconstructs synthetic old photos (crops of ``--data`` damaged by ``degrade``) and,
with ``--old``, real old photos (one of each per batch item). A latent PatchGAN tells their
latents apart and the encoder learns to fool it, which closes the domain gap between synthetic
and real damage in the latent space (eq. 3-4). As in the reference, the critic's "real" side
is the synthetic latents and only real old photos' latents are pushed towards it. Without real
old photos the latent GAN has no real side and is off (the log says so).
"""

from __future__ import annotations

import torch

from ..data import OldSet
from ..discriminators import discriminator_width, latent_discriminator
from ..export import Export
from ..gan import Critic
from ..nets import init_weights
from ._vae import VAEStage
from .base import photo_source

__all__ = ["VaeOldStage"]


class VaeOldStage(VAEStage):
    """Reconstruct synthetic and real old crops; align their latents adversarially."""

    name = "vae_old"

    def __init__(self, cfg, ctx, log) -> None:
        super().__init__(cfg, ctx, log)
        source = photo_source(cfg, cfg.data, log, "photos to damage")
        old = photo_source(cfg, cfg.old, log, "real old photos") if cfg.old else None
        if old is None:
            log.once("no --old folder: the latent GAN (eq. 3-4) has no real side (real old "
                     "photos), so it is off; VAE_1 learns from synthetic old photos only")
        self.data_size = len(source) + (len(old) if old else 0)
        self.dataset = OldSet(source, old, cfg.seed)
        self._build_vae()
        self.latent_critic: Critic | None = None
        if old is not None:
            assert cfg.width is not None
            d = latent_discriminator(cfg.width, discriminator_width(cfg.width))
            init_weights(d)
            self.latent_critic = Critic(d.to(self.device), ctx, cfg.lr)
            self.networks["latent_discriminator"] = d
            self.optimizers["latent_discriminator"] = self.latent_critic.optimizer

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        synthetic, real = batch["synthetic"], batch.get("real")
        x = synthetic if real is None else torch.cat([synthetic, real])
        total, terms, mu, recon = self._reconstruction(x)
        n = synthetic.shape[0]
        if self.latent_critic is not None:
            terms["g_latent_gan"], _ = self.latent_critic.generator_terms(mu[n:], None)
            total = total + self.cfg.latent_gan_weight * terms["g_latent_gan"]
        self.optimise(self.opt_g, total)
        terms["d_real"], terms["d_fake"] = self.critic.step(x, recon)
        if self.latent_critic is not None:
            terms["latent_d_synthetic"], terms["latent_d_real_old"] = self.latent_critic.step(
                mu[:n].detach(), mu[n:].detach())
        terms["g_total"] = total
        return {k: v.detach() for k, v in terms.items()}

    def sample(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        x = batch["synthetic"] if "real" not in batch else torch.cat(
            [batch["synthetic"], batch["real"]])
        return self._reconstruct_columns(x)

    def export(self) -> Export:
        return Export(self.vae, "vae", "vae_a", "VAE_A.safetensors")
