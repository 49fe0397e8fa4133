"""ComfyUI type names and the category of the node pack (DESIGN.md §4)."""

from __future__ import annotations

CATEGORY = "image/restoration/old photo"
#: Loaders sit with ComfyUI's own loaders, in a sub-category for the pack (as core loaders are
#: found under "loaders").
LOADERS_CATEGORY = "loaders/old photo"

# ComfyUI's own types
IMAGE = "IMAGE"              # [B, H, W, C] float 0..1
MASK = "MASK"                # [B, H, W] float 0..1
STRING = "STRING"
INT = "INT"
FLOAT = "FLOAT"
BOOLEAN = "BOOLEAN"

# ours
LATENT = "OLDPHOTO_LATENT"              # dict: samples [B, C, h, w], domain, sizes, padding
FACES = "OLDPHOTO_FACES"                # FaceSet (face_set.py): detections + their photos
VAE = "OLDPHOTO_VAE"
MAPPING = "OLDPHOTO_MAPPING"
SCRATCH_MODEL = "OLDPHOTO_SCRATCH_MODEL"
FACE_MODEL = "OLDPHOTO_FACE_MODEL"
FACE_DETECTOR = "OLDPHOTO_FACE_DETECTOR"

#: model kind (``oldphoto_core.registry.KINDS``) -> ComfyUI type
MODEL_TYPES = {
    "vae": VAE,
    "mapping": MAPPING,
    "scratch_detector": SCRATCH_MODEL,
    "face_enhancer": FACE_MODEL,
}

__all__ = ["BOOLEAN", "CATEGORY", "FACES", "FACE_DETECTOR", "FACE_MODEL", "FLOAT", "IMAGE", "INT",
           "LATENT", "LOADERS_CATEGORY", "MAPPING", "MASK", "MODEL_TYPES", "SCRATCH_MODEL",
           "STRING", "VAE"]
