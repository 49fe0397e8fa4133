"""oldphoto_core: the engine of the oldphoto restorer (Wan et al., "Old Photo Restoration via
Deep Latent Space Translation"). Pure PyTorch; never imports ComfyUI."""

from .errors import CheckpointError, InputError, OldPhotoError, UnsupportedModelError
from .loading import (
                      ModelDescriptor,
                      canonicalize_state_dict,
                      load_model,
                      model_from_state_dict,
                      read_state_dict,
                      save_safetensors,
)
from .registry import ARCHITECTURES, KINDS, ArchSpec, detect_architecture, get_architecture

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "KINDS", "ArchSpec", "CheckpointError", "InputError", "ModelDescriptor",
    "OldPhotoError", "UnsupportedModelError", "canonicalize_state_dict", "detect_architecture",
    "get_architecture", "load_model", "model_from_state_dict", "read_state_dict",
    "save_safetensors", "__version__",
]
