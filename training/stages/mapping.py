"""``mapping``: the latent translation between the frozen VAEs (eq. 5-6).

For a clean crop ``y`` and its damaged copy ``x`` (damaged pixels painted white and the
ground-truth mask passed along for ``scratch``/``hr``):
``z_x = E_old(x)``, ``z_y = E_clean(y)``, ``z = T(z_x[, m])``, ``y' = G_clean(z)`` and
``L_T = lambda1 |z - z_y|_1 + LSGAN(y' | x) + lambda2 FM (+ lambda2 VGG)``, with a multi-scale
PatchGAN conditioned on ``x`` (the reference's conditional ``netD``; spectrally normalised for
the masked variants, as its ``--use_SN`` runs). Both VAEs stay frozen; gradients reach ``T``
through the clean decoder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from oldphoto_core.arch import PatchAttentionMapping, QualityMapping, ScratchMapping
from oldphoto_core.errors import CheckpointError
from oldphoto_core.loading import ModelDescriptor, load_model

from ..data import MappingSet
from ..discriminators import MultiScaleDiscriminator, discriminator_width
from ..distributed import wrap
from ..errors import TrainingError
from ..export import Export
from ..gan import adam
from ..losses import l1_loss
from ..nets import MappingTrainer, init_weights
from ..records import to_unit_rgb
from .base import Stage, perceptual_or_none, photo_source

__all__ = ["MappingStage", "VARIANTS"]

#: variant -> (network class, registry id, role, file name)
VARIANTS = {
    "quality": (QualityMapping, "mapping_quality", "mapping_quality",
                "mapping_quality.safetensors"),
    "scratch": (ScratchMapping, "mapping_scratch", "mapping_scratch",
                "mapping_scratch.safetensors"),
    "hr": (PatchAttentionMapping, "mapping_patch_attention", "mapping_hr",
           "mapping_Patch_Attention.safetensors"),
}


def _load_vae(path: Path, flag: str, device: torch.device) -> ModelDescriptor:
    try:
        return load_model(path, expect="vae", device=device)
    except CheckpointError as exc:
        raise TrainingError(f"{flag}: {exc}") from exc


class MappingStage(Stage):
    """Train one mapping network between two frozen VAEs."""

    name = "mapping"

    def __init__(self, cfg, ctx, log) -> None:
        super().__init__(cfg, ctx, log)
        assert cfg.vae_old is not None and cfg.vae_clean is not None and cfg.width is not None
        variant = cfg.variant or "quality"
        source = photo_source(cfg, cfg.data, log)
        self.data_size = len(source)
        self.dataset = MappingSet(source, variant, cfg.seed)
        self.vae_old = _load_vae(cfg.vae_old, "--vae-old", self.device).model
        self.vae_clean = _load_vae(cfg.vae_clean, "--vae-clean", self.device).model
        c_old = self.vae_old.encoder[1].out_channels
        c_clean = self.vae_clean.encoder[1].out_channels
        if c_old != c_clean:
            raise TrainingError(f"the VAEs have different latent widths ({c_old} in --vae-old, "
                                f"{c_clean} in --vae-clean); train both with the same --width")
        cls, self.arch_id, self.role, self.filename = VARIANTS[variant]
        self.net = cls(latent_channels=c_old, width=cfg.width)
        init_weights(self.net)
        self.start_from(self.net, self.arch_id)
        self.net.to(self.device)
        self.variant = variant
        self.mapper = wrap(MappingTrainer(self.net), ctx)
        self.opt = adam(self.net.parameters(), cfg.lr)
        d = MultiScaleDiscriminator(6, discriminator_width(cfg.width),
                                    spectral=variant != "quality")
        init_weights(d)
        self.critic = self.critic_for(d.to(self.device))
        self.perceptual = perceptual_or_none(cfg, log, self.device)
        self.networks = {"generator": self.net, "discriminator": d}
        self.optimizers = {"generator": self.opt, "discriminator": self.critic.optimizer}
        log(f"mapping {variant}: latent width {c_old}, mapping width {cfg.width}; VAEs frozen")

    def train_mode(self, on: bool = True) -> None:
        super().train_mode(on)
        self.vae_old.eval()
        self.vae_clean.eval()

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x, y, mask = batch["degraded"], batch["clean"], batch.get("mask")
        with torch.no_grad():
            z_x = self.vae_old.encode(x)
            z_y = self.vae_clean.encode(y)
        z = self.mapper(z_x, mask)
        terms = {"latent_l1": l1_loss(z, z_y)}
        total = cfg.latent_weight * terms["latent_l1"]
        if self.critic.active or self.perceptual is not None:
            # the image-space terms; without them (--gan-weight 0, no VGG) the decoder
            # would run for nothing
            out = self.vae_clean.decode(z)
            total, gan = self.image_gan_terms(out, y, cond=x, base=total)
            terms.update(gan)
        self.optimise(self.opt, total)
        if self.critic.active:
            terms["d_real"], terms["d_fake"] = self.critic.step(y, out, cond=x)
        terms["g_total"] = total
        return {k: v.detach() for k, v in terms.items()}

    def sample(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Degraded input | restoration through the engine's own forward | clean target."""
        x, y, mask = batch["degraded"], batch["clean"], batch.get("mask")
        with torch.no_grad():
            z_x = self.vae_old.encode(x)
            z = self.net(z_x) if mask is None else self.net(z_x, mask)
            out = self.vae_clean.decode(z)
        return [to_unit_rgb(x), to_unit_rgb(out), to_unit_rgb(y)]

    def export(self) -> Export:
        return Export(self.net, self.arch_id, self.role, self.filename)
