"""What the two VAE stages share: the VAE, its image critic and the reconstruction objective.

Objective of a VAE on images ``x`` (eq. 1-2; the reference's pix2pixHD_model_DA):
``L_G = w_KL * KL(mu) + alpha * |G(mu + eps) - x|_1 + LSGAN_G + w_FM * FM (+ w_VGG * VGG)``
with an unconditional multi-scale PatchGAN judging reconstructions against the inputs.
"""

from __future__ import annotations

import torch

from oldphoto_core.arch import OldPhotoVAE

from ..discriminators import MultiScaleDiscriminator, discriminator_width
from ..distributed import wrap
from ..gan import adam
from ..losses import kl_loss, l1_loss
from ..nets import VAETrainer, init_weights
from ..records import to_unit_rgb
from .base import Stage, perceptual_or_none

__all__ = ["VAEStage"]


class VAEStage(Stage):
    """Base of ``vae_clean`` and ``vae_old``: call :meth:`_build_vae` once the data is known."""

    def _build_vae(self) -> None:
        cfg = self.cfg
        assert cfg.width is not None
        self.vae = OldPhotoVAE(channels=cfg.width)
        init_weights(self.vae)
        self.start_from(self.vae, "vae")
        self.vae.to(self.device)
        self.generator = wrap(VAETrainer(self.vae), self.ctx)
        self.opt_g = adam(self.vae.parameters(), cfg.lr)
        d = MultiScaleDiscriminator(3, discriminator_width(cfg.width))
        init_weights(d)
        self.critic = self.critic_for(d.to(self.device))
        self.perceptual = perceptual_or_none(cfg, self.log, self.device)
        self.networks = {"generator": self.vae, "discriminator": d}
        self.optimizers = {"generator": self.opt_g, "discriminator": self.critic.optimizer}

    def _reconstruction(self, x: torch.Tensor
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor,
                                   torch.Tensor]:
        """Forward ``x`` ``[B, 3, H, W]``; returns (generator loss, its terms, mu, recon)."""
        cfg = self.cfg
        mu, recon = self.generator(x)
        terms = {"kl": kl_loss(mu), "l1": l1_loss(recon, x)}
        total, gan = self.image_gan_terms(
            recon, x, base=cfg.kl_weight * terms["kl"] + cfg.l1_weight * terms["l1"])
        terms.update(gan)
        return total, terms, mu, recon

    def _reconstruct_columns(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Input | reconstruction (from the latent mean, no noise) | target (= input)."""
        with torch.no_grad():
            recon = self.vae.decode(self.vae.encode(x))
        return [to_unit_rgb(x), to_unit_rgb(recon), to_unit_rgb(x)]
