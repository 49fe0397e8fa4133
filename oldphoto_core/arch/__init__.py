"""Networks of the paper, one module each; parameter names match the published checkpoints."""

from .mapping import PatchAttentionMapping, QualityMapping, ScratchMapping
from .scratch_unet import ScratchUNet
from .spade import SPADEFaceGenerator
from .vae import OldPhotoVAE

__all__ = ["OldPhotoVAE", "QualityMapping", "ScratchMapping", "PatchAttentionMapping",
           "ScratchUNet", "SPADEFaceGenerator"]
