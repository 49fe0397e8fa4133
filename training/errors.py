"""Errors a run reports to the user as one clear message (no traceback), before or while
training."""

from __future__ import annotations

__all__ = ["TrainingError", "DataError"]


class TrainingError(Exception):
    """A run cannot start or continue; the message says what to change."""


class DataError(TrainingError):
    """A data folder yields no usable image, or a labelled pair is incomplete."""
