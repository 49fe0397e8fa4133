"""``vae_clean``: VAE_2, the clean-photo VAE (eq. 1-2), on random crops of clean photos."""

from __future__ import annotations

import torch

from ..data import CleanSet
from ..export import Export
from ._vae import VAEStage
from .base import photo_source

__all__ = ["VaeCleanStage"]


class VaeCleanStage(VAEStage):
    """Reconstruct clean crops through the VAE; KL + alpha L1 + LSGAN + feature matching."""

    name = "vae_clean"

    def __init__(self, cfg, ctx, log) -> None:
        super().__init__(cfg, ctx, log)
        source = photo_source(cfg, cfg.data, log)
        self.data_size = len(source)
        self.dataset = CleanSet(source, cfg.seed)
        self._build_vae()

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        x = batch["clean"]
        total, terms, _, recon = self._reconstruction(x)
        self.optimise(self.opt_g, total)
        terms["d_real"], terms["d_fake"] = self.critic.step(x, recon)
        terms["g_total"] = total
        return {k: v.detach() for k, v in terms.items()}

    def sample(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self._reconstruct_columns(batch["clean"])

    def export(self) -> Export:
        variant = self.cfg.variant or "quality"
        return Export(self.vae, "vae", f"vae_b_{variant}", f"VAE_B_{variant}.safetensors")
