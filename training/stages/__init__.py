"""One module per stage, all keeping :class:`~training.stages.base.Stage`'s contract."""

from __future__ import annotations

from .base import Stage
from .detector import DetectorStage
from .face import FaceStage
from .mapping import MappingStage
from .vae_clean import VaeCleanStage
from .vae_old import VaeOldStage

__all__ = ["Stage", "STAGE_CLASSES", "build_stage"]

STAGE_CLASSES: dict[str, type[Stage]] = {
    "vae_clean": VaeCleanStage,
    "vae_old": VaeOldStage,
    "mapping": MappingStage,
    "detector": DetectorStage,
    "face": FaceStage,
}


def build_stage(cfg, ctx, log) -> Stage:
    """The stage object of ``cfg.stage`` with its networks, optimisers and dataset."""
    return STAGE_CLASSES[cfg.stage](cfg, ctx, log)
