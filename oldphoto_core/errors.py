"""Exceptions of the engine. Each message names the file and what was expected."""

from __future__ import annotations

__all__ = ["OldPhotoError", "CheckpointError", "UnsupportedModelError", "InputError",
           "OutputError", "InsufficientMemoryError", "DownloadError"]


class OldPhotoError(Exception):
    """Base class of every error raised on purpose by ``oldphoto_core``."""


class CheckpointError(OldPhotoError):
    """A checkpoint file cannot be read safely, or does not hold the expected weights."""


class UnsupportedModelError(CheckpointError):
    """A state dict matches none of the known networks."""


class InputError(OldPhotoError, ValueError):
    """An image, mask or latent that the engine cannot process as given."""


class OutputError(OldPhotoError):
    """A result cannot be written: the folder cannot be created, the disk is full ..."""


class DownloadError(OldPhotoError):
    """A file could not be fetched: no connection, an HTTP error, a download that ended short.

    The message says what to do next (re-run to resume, check the URL).
    """


class InsufficientMemoryError(InputError):
    """An image is too large for the memory of the device it would run on; decided up front.

    Attributes:
        needed: estimated peak bytes of the restoration.
        available: bytes the device has available.
        max_megapixels: the largest working size (megapixels) that fits, for a retry with a
            downscaled working size.
    """

    def __init__(self, message: str, *, needed: int, available: int,
                 max_megapixels: float) -> None:
        super().__init__(message)
        self.needed, self.available, self.max_megapixels = needed, available, max_megapixels
