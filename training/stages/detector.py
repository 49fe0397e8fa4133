"""``detector``: the scratch detection U-Net (paper §3.3, eq. 11-15).

Inputs are what the restoration gives the detector: the luma of the photo in [-1, 1]. Targets
are ``degrade``'s ground-truth masks of synthetic damage, mixed with real labelled pairs
(``--pairs``, a ``--pairs-fraction`` share of the samples). Loss: class-balanced cross-entropy
plus ``beta`` times a focal term (gamma = 0.2, beta = 10).
"""

from __future__ import annotations

import torch
from torch import nn

from oldphoto_core.arch import ScratchUNet

from ..data import DetectorSet
from ..data.pairs import scan_pairs
from ..distributed import wrap
from ..evaluate import mask_f1
from ..export import Export
from ..gan import adam
from ..losses import detector_loss
from ..records import to_unit_rgb
from .base import Stage, photo_source

__all__ = ["DetectorStage"]


class DetectorStage(Stage):
    """Train the U-Net on (luma, mask) pairs."""

    name = "detector"

    def __init__(self, cfg, ctx, log) -> None:
        super().__init__(cfg, ctx, log)
        assert cfg.width is not None and cfg.crop is not None
        pairs = scan_pairs(cfg.pairs, report=log.once) if cfg.pairs else None
        only_pairs = pairs is not None and cfg.pairs_fraction >= 1.0
        source = None if only_pairs else photo_source(cfg, cfg.data, log, "photos to damage")
        if pairs:
            share = 1.0 if only_pairs else cfg.pairs_fraction
            log(f"{len(pairs)} labelled pairs in {cfg.pairs}, {share:.0%} of the samples")
        self.data_size = (len(source) if source else 0) + (len(pairs) if pairs else 0)
        self.dataset = DetectorSet(source, pairs, cfg.pairs_fraction, cfg.seed, crop=cfg.crop,
                                   max_side=cfg.max_side)
        # PyTorch's default (Kaiming-uniform) initialisation: the reference released no
        # detector training to follow, and with batch norm it learns several times faster
        # than pix2pixHD's N(0, 0.02) in our short runs.
        net: nn.Module = ScratchUNet(base=cfg.width)
        self.start_from(net, "scratch_unet")
        if ctx.distributed and ctx.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.unet = net.to(self.device)
        self.model = wrap(self.unet, ctx)
        self.opt = adam(self.unet.parameters(), cfg.lr)
        self.networks = {"generator": self.unet}
        self.optimizers = {"generator": self.opt}

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        image, mask = batch["image"], batch["mask"]
        logits = self.model(image)
        terms = detector_loss(logits, mask, gamma=cfg.focal_gamma, beta=cfg.focal_weight)
        self.optimise(self.opt, terms["total"])
        out = {k: v.detach() for k, v in terms.items()}
        with torch.no_grad():
            out["f1"] = torch.tensor(mask_f1(torch.sigmoid(logits), mask))
        return out

    def sample(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Luma input | predicted probability | ground-truth mask."""
        with torch.no_grad():
            prob = torch.sigmoid(self.unet(batch["image"]))
        return [to_unit_rgb(batch["image"]), to_unit_rgb(prob, signed=False),
                to_unit_rgb(batch["mask"], signed=False)]

    def export(self) -> Export:
        return Export(self.unet, "scratch_unet", "scratch_detector",
                      "scratch_detector.safetensors")
