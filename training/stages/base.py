"""The contract every stage keeps, and the pieces stages share.

A stage builds its networks, optimisers and dataset from the typed config, then the loop
(:mod:`training.loop`) calls:

* ``train_step(batch, step) -> {name: scalar tensor}`` - one optimisation step;
* ``sample(batch) -> [input, output, target]`` - ``[B, 3, H, W]`` tensors in [0, 1] for the
  sample grid (no gradient, no RNG, no change to any state);
* ``export() -> Export`` - the generator to write;
* ``networks`` / ``optimizers`` - everything the resume state saves (unwrapped modules).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from oldphoto_core.errors import CheckpointError
from oldphoto_core.loading import load_model

from ..config import TrainConfig
from ..data import PhotoSource, SampleSet, scan_images
from ..distributed import Context
from ..errors import TrainingError
from ..export import Export
from ..gan import Critic
from ..records import RunLog
from ..vgg import PerceptualLoss, load_vgg19

__all__ = ["Stage", "photo_source", "perceptual_or_none"]


class Stage(ABC):
    """Base class of the five stages (see the module docstring for the contract)."""

    name: ClassVar[str]
    #: the image critic and the optional VGG term of the stages that use
    #: :meth:`image_gan_terms` (set by those stages)
    critic: Critic
    perceptual: PerceptualLoss | None

    def __init__(self, cfg: TrainConfig, ctx: Context, log: RunLog) -> None:
        self.cfg, self.ctx, self.log = cfg, ctx, log
        self.device = ctx.device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.dataset: SampleSet
        #: number of training images (for the exported metadata and the log)
        self.data_size = 0

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One step on ``batch`` (already on the device); returns detached scalar losses."""

    @abstractmethod
    def sample(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Columns of the sample grid for ``batch``: input, output, target."""

    @abstractmethod
    def export(self) -> Export:
        """The generator to write, with its architecture id, role and file name."""

    def start_from(self, module: nn.Module, arch_id: str) -> None:
        """Load ``--init`` weights into ``module`` (fine-tuning); no-op without ``--init``.

        Raises:
            TrainingError: the file is not a ``arch_id`` network or has another width.
        """
        if self.cfg.init is None:
            return
        try:
            desc = load_model(self.cfg.init, expect=arch_id)
            module.load_state_dict(desc.model.state_dict(), strict=True)
        except (CheckpointError, RuntimeError) as exc:
            raise TrainingError(f"--init: {exc}\n(the file's widths must match --width "
                                f"{self.cfg.width})") from exc
        self.log(f"starting from {self.cfg.init} ({desc.arch.title})")

    def critic_for(self, net: nn.Module) -> Critic:
        """The image critic around discriminator ``net`` (already on the device); off when
        ``--gan-weight`` is 0."""
        return Critic(net, self.ctx, self.cfg.lr, active=self.cfg.gan_weight > 0)

    def image_gan_terms(self, out: torch.Tensor, target: torch.Tensor,
                        cond: torch.Tensor | None = None,
                        base: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's image-space adversarial terms, shared by the VAE, mapping and face
        stages: ``gan_weight`` x LSGAN + ``fm_weight`` x feature matching against
        ``self.critic`` (both zero when the critic is off), + ``vgg_weight`` x the VGG term
        when ``self.perceptual`` is on.

        Args:
            out, target: ``[B, 3, H, W]`` in [-1, 1]; cond: the critic's condition, if any.
            base: the stage's own loss so far, which the terms are added to.

        Returns:
            ``(total, {"g_gan", "g_fm"[, "g_vgg"]})``.
        """
        cfg = self.cfg
        terms: dict[str, torch.Tensor] = {}
        terms["g_gan"], terms["g_fm"] = self.critic.generator_terms(out, target, cond=cond)
        gan = cfg.gan_weight * terms["g_gan"]
        total = gan if base is None else base + gan
        total = total + cfg.fm_weight * terms["g_fm"]
        if self.perceptual is not None:
            terms["g_vgg"] = self.perceptual(out, target)
            total = total + cfg.vgg_weight * terms["g_vgg"]
        return total, terms

    @staticmethod
    def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One gradient step of ``optimizer`` on ``loss``."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def train_mode(self, on: bool = True) -> None:
        """Put every trained network in train (or eval) mode."""
        for net in self.networks.values():
            net.train(on)


def photo_source(cfg: TrainConfig, root: Path, log: RunLog, what: str = "photos"
                 ) -> PhotoSource:
    """Scan ``root`` (reporting what was left out) and wrap it as a seeded source."""
    assert cfg.crop is not None
    scan = scan_images(root, crop=cfg.crop, small=cfg.small, report=log.once, what=what)
    log(f"{len(scan)} {what} in {root}")
    return PhotoSource(scan.entries, crop=cfg.crop, max_side=cfg.max_side,
                       color_augment=cfg.color_augment,
                       photo_scale=cfg.damage_scale == "photo")


def perceptual_or_none(cfg: TrainConfig, log: RunLog, device: torch.device
                       ) -> PerceptualLoss | None:
    """The VGG19 perceptual term from ``--vgg19``, or None (said once in the log)."""
    if cfg.vgg19 is None:
        log.once("no --vgg19 weights given: the VGG perceptual term is off (nothing is "
                 "downloaded; pass torchvision VGG19 weights to turn it on)")
        return None
    net = load_vgg19(cfg.vgg19)
    log(f"VGG19 perceptual term on (weight {cfg.vgg_weight}) from {cfg.vgg19}")
    return PerceptualLoss(net).to(device)
