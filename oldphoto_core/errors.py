"""Exceptions of the engine. Each message names the file and what was expected."""

from __future__ import annotations

__all__ = ["OldPhotoError", "CheckpointError", "UnsupportedModelError", "InputError"]


class OldPhotoError(Exception):
    """Base class of every error raised on purpose by ``oldphoto_core``."""


class CheckpointError(OldPhotoError):
    """A checkpoint file cannot be read safely, or does not hold the expected weights."""


class UnsupportedModelError(CheckpointError):
    """A state dict matches none of the known networks."""


class InputError(OldPhotoError, ValueError):
    """An image, mask or latent that the engine cannot process as given."""
