"""Pipeline stages as batched NCHW functions (images float 0..1)."""

from .restore import (
                      OldPhotoLatent,
                      decode_clean,
                      encode_old,
                      map_latent,
                      paint_holes,
                      reference_stretch,
)
from .scratch import detect_scratches, dilate_mask, scratch_probability

__all__ = ["OldPhotoLatent", "decode_clean", "detect_scratches", "dilate_mask", "encode_old",
           "map_latent", "paint_holes", "reference_stretch", "scratch_probability"]
