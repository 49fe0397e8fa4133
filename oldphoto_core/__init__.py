"""oldphoto_core: the engine of the oldphoto restorer (Wan et al., "Old Photo Restoration via
Deep Latent Space Translation"). Pure PyTorch; never imports ComfyUI."""

from .degrade import DegradeConfig, DegradeResult, degrade
from .errors import (
    CheckpointError,
    InputError,
    InsufficientMemoryError,
    OldPhotoError,
    OutputError,
    UnsupportedModelError,
)
from .faces import Face, FaceDetector, make_face_detector, restore_faces
from .io.images import read_image, write_image
from .loading import (
    ModelDescriptor,
    canonicalize_state_dict,
    load_model,
    model_from_state_dict,
    read_state_dict,
    save_safetensors,
)
from .models import MissingModelsError, ModelStore
from .pipeline import Restorer, RestoreResult
from .registry import ARCHITECTURES, KINDS, ArchSpec, detect_architecture, get_architecture
from .stages import OldPhotoLatent, decode_clean, detect_scratches, encode_old, map_latent

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "KINDS", "ArchSpec", "CheckpointError", "DegradeConfig", "DegradeResult",
    "Face", "FaceDetector", "make_face_detector", "restore_faces",
    "InputError", "InsufficientMemoryError", "MissingModelsError", "ModelDescriptor",
    "ModelStore", "OldPhotoError", "OutputError",
    "OldPhotoLatent", "RestoreResult", "Restorer", "UnsupportedModelError",
    "canonicalize_state_dict", "decode_clean", "degrade", "detect_architecture",
    "detect_scratches", "encode_old", "get_architecture", "load_model", "map_latent",
    "model_from_state_dict", "read_image", "read_state_dict", "save_safetensors",
    "write_image", "__version__",
]


def __getattr__(name: str):
    """``restore_dataset`` (restoration as a step of a Ray Data pipeline), imported on first
    use: its module needs the ``ray`` extra only when called, and ``import oldphoto_core``
    stays as light as the core."""
    if name == "restore_dataset":
        from .cli.ray_engine import restore_dataset
        return restore_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
