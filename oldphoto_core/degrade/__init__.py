"""Degradation synthesis: old-photo damage with its ground-truth defect mask (paper §4.2).

The entry point is :func:`degrade`; :class:`DegradeConfig` holds every range (the paper's
values by default). The single ops are exported too, for tests, training and nodes.
"""

from .config import BLEND_MODES, DEFAULT_CONFIG, UNSTRUCTURED_OPS, DegradeConfig
from .pipeline import MIN_SIZE, DegradeResult, degrade
from .structured import (
                         blend_texture,
                         composite_paper,
                         defect_mask,
                         fade,
                         film_grain,
                         sepia,
                         soft_blur,
                         vignette,
)
from .textures import (
                         draw_cracks,
                         draw_creases,
                         draw_dust,
                         draw_holes,
                         draw_scratches,
                         elastic_distort,
                         paper_texture,
                         paper_tone,
)
from .unstructured import (
                         add_gaussian_noise,
                         apply_unstructured,
                         box_blur,
                         color_jitter,
                         gaussian_blur,
                         jpeg_compress,
                         sample_unstructured,
)

__all__ = [
    "BLEND_MODES", "DEFAULT_CONFIG", "MIN_SIZE", "UNSTRUCTURED_OPS", "DegradeConfig",
    "DegradeResult", "add_gaussian_noise", "apply_unstructured", "blend_texture", "box_blur",
    "color_jitter", "composite_paper", "defect_mask", "degrade", "draw_cracks", "draw_creases",
    "draw_dust", "draw_holes", "draw_scratches", "elastic_distort", "fade", "film_grain",
    "gaussian_blur", "jpeg_compress", "paper_texture", "paper_tone", "sample_unstructured",
    "sepia", "soft_blur", "vignette",
]
