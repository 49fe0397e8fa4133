"""Synthetic damage for training pairs: :func:`oldphoto_core.degrade.degrade` plus the few
choices each stage makes around it (which defects, painted holes, shrunken faces)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto_core.degrade import DEFAULT_CONFIG, DegradeConfig, degrade
from oldphoto_core.stages.restore import paint_holes
from oldphoto_core.stages.scratch import dilate_mask

__all__ = ["FULL", "DETECTABLE", "UNSTRUCTURED_ONLY", "damage", "paint_damaged",
           "shrink_and_restore", "HR_MASK_DILATION"]

#: Everything of the paper's recipe: ageing, structured defects (with their mask), grain,
#: unstructured damage.
FULL = DEFAULT_CONFIG
#: The full recipe with the mask cut to the damage that still shows in the finished image
#: (``mask_visible_threshold``): the detector's targets, and the masks the scratch and hr
#: mappings see, as the detector gives them at restoration. Under a heavy blur or noise a
#: quarter to half of the drawn scratch pixels vanish; as targets they only teach guessing.
DETECTABLE = FULL.replace(mask_visible_threshold=FULL.mask_threshold)
#: The same without structured defects: the quality mapping's and the face model's inputs
#: (the reference trains ``mapping_quality`` without holes; faces reach the face model after
#: the global restoration removed the scratches).
UNSTRUCTURED_ONLY = DEFAULT_CONFIG.replace(
    scratch_count=(0, 0), crack_count=(0, 0), dust_density=(0.0, 0.0), crease_count=(0, 0),
    hole_count=(0, 0))
#: The HR restoration dilates the detected mask by three 3x3 iterations before mapping
#: (``test.py --HR``); the hr mapping is trained on masks dilated the same way.
HR_MASK_DILATION = 3


def damage(clean: torch.Tensor, seed: int, config: DegradeConfig = FULL,
           photo_side: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Damage one crop.

    ``photo_side``: the short side of the photo the crop was cut from; defects are then drawn
    at that photo's pixel scale (``texture_scale``), as restoring the whole photo meets them.
    Without it, the crop is damaged as a whole photo of its own size.

    Shape: ``[3, H, W]`` in [0, 1] -> (``[3, H, W]`` in [0, 1], mask ``[1, H, W]`` in {0, 1}).
    """
    if photo_side is not None:
        config = config.replace(texture_scale=photo_side / config.reference_size)
    out = degrade(clean[None], seed=seed, config=config)
    return out.image[0], out.mask[0]


def paint_damaged(image: torch.Tensor, mask: torch.Tensor, dilation: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint the masked pixels white, as the restoration does before encoding a scratched photo.

    Shape: ``[3, H, W]``, ``[1, H, W]`` -> the painted image and the (dilated) mask.
    """
    if dilation:
        mask = dilate_mask(mask[None], dilation)[0]
    return paint_holes(image[None], mask[None])[0], mask


def shrink_and_restore(face: torch.Tensor, rng: np.random.Generator,
                       max_factor: float) -> torch.Tensor:
    """Lose detail as a small face in a photo does: shrink by a random factor in
    ``[1, max_factor]`` (antialiased), then enlarge back (bicubic).

    Shape: ``[3, S, S]`` -> ``[3, S, S]``.
    """
    factor = float(rng.uniform(1.0, max_factor)) if max_factor > 1.0 else 1.0
    side = face.shape[-1]
    small = max(8, round(side / factor))
    if small >= side:
        return face
    x = F.interpolate(face[None], size=(small, small), mode="bilinear", antialias=True,
                      align_corners=False)
    return F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)[0].clamp_(
        0.0, 1.0)
