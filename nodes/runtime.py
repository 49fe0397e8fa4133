"""What every runner node shares: the model handles passed between nodes, device moves, progress
and interruption."""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.loading import ModelDescriptor
from oldphoto_core.runtime.progress import responsive

from . import comfy_compat as compat

log = logging.getLogger("oldphoto")

__all__ = ["FaceDetectorHandle", "OldPhotoModel", "Steps", "expect_model", "models_on_device",
           "release_freed_host_memory"]

# Activation memory asked for on top of the weights when a model goes to an accelerator: a rough
# upper bound for a ~1 Mpx photo through the mapping (ComfyUI frees other models to make room).
_WORKING_MEMORY = 1536 * 2**20

#: glibc's ``malloc_trim``, ``False`` where there is none; looked up once.
_malloc_trim: Callable[[int], int] | bool | None = None


@dataclass(frozen=True, eq=False)
class OldPhotoModel:
    """A loaded checkpoint as passed between nodes (OLDPHOTO_VAE, _MAPPING, ...).

    Attributes:
        descriptor: the core's model (shared with the loader's cache; nodes never change its
            weights, only move it to the device while they run it).
        name: the file as listed in ``models/oldphoto``.
        face_size: face models only: the crop size the model runs at (256 or 512).
    """

    descriptor: ModelDescriptor
    name: str
    face_size: int | None = None

    @property
    def kind(self) -> str:
        return self.descriptor.arch.kind

    @property
    def title(self) -> str:
        return self.descriptor.arch.title

    def __repr__(self) -> str:
        size = f", {self.face_size} px" if self.face_size else ""
        return f"OldPhotoModel({self.descriptor.arch.id}, {self.name!r}{size})"


@dataclass(frozen=True, eq=False)
class FaceDetectorHandle:
    """An OLDPHOTO_FACE_DETECTOR: the core's detector plus how it was chosen."""

    detector: object
    backend: str

    def __repr__(self) -> str:
        return f"FaceDetectorHandle({self.backend})"


def expect_model(value: object, kind: str, *, node: str, input_name: str) -> OldPhotoModel:
    """Check that ``value`` is a loaded model of ``kind`` (a wrong link gives a clear error)."""
    if not isinstance(value, OldPhotoModel):
        raise InputError(f"{node}: input '{input_name}' expects a model from an oldphoto loader "
                         f"node, got a {type(value).__name__}")
    if value.kind != kind:
        raise InputError(f"{node}: input '{input_name}' expects a {kind} model, but "
                         f"'{value.name}' holds a {value.title}")
    return value


def _nbytes(desc: ModelDescriptor) -> int:
    return sum(t.numel() * t.element_size() for t in desc.model.state_dict().values())


@contextmanager
def models_on_device(*models: ModelDescriptor) -> Iterator[torch.device]:
    """Move models to ComfyUI's device for the duration of a ``with`` block, and back after.

    On an accelerator, ComfyUI is first asked to free memory for the weights plus working
    memory. Models go back to the offload device in a ``finally``, so an error or an interrupt
    never leaves them on the GPU. Inside the block, long computations report in small steps
    (:func:`oldphoto_core.runtime.progress.responsive`), so Cancel lands within a second.
    """
    device = compat.get_torch_device()
    offload = compat.offload_device()
    todo: list[ModelDescriptor] = []
    for m in models:  # descriptors are unhashable dataclasses: dedupe by identity
        if m is not None and not any(m is t for t in todo):
            todo.append(m)
    if device.type != "cpu":
        compat.free_memory(sum(_nbytes(m) for m in todo) + _WORKING_MEMORY, device)
    moved: list[ModelDescriptor] = []
    try:
        for m in todo:
            if m.device != device:
                with torch.inference_mode(False):  # see loaders.load_path_cached
                    m.to(device)
                moved.append(m)
        with responsive():  # a user waits on Cancel: report in small steps
            yield device
    finally:
        for m in moved:
            with torch.inference_mode(False):
                m.to(offload)
        if moved and device.type != "cpu":
            compat.soft_empty_cache()
        release_freed_host_memory()


def release_freed_host_memory() -> None:
    """Give the memory a run freed back to the operating system.

    glibc keeps freed blocks in its arenas (one per thread that allocated), so a server that ran
    one large restoration keeps that peak as resident memory for its whole life, although
    nothing uses it. ``malloc_trim(0)`` returns it; elsewhere than glibc this does nothing.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith(
                "linux") else False
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


class Steps:
    """A ComfyUI progress bar plus the interrupt check, for loops over images or faces."""

    _FINE = 1000  # bar units per item while an item reports its own progress

    def __init__(self, total: int) -> None:
        self.total = max(int(total), 1)
        self.done = 0
        self.bar = compat.ProgressBar(self.total)

    def check(self) -> None:
        """Raise if the user cancelled (call before each unit of work)."""
        compat.throw_if_interrupted()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.bar.update_absolute(self.done, self.total)

    def absolute(self, done: int, total: int | None = None) -> None:
        """``progress(done, total)`` callback of the core: check the interrupt, move the bar."""
        compat.throw_if_interrupted()
        self.done = done
        self.bar.update_absolute(done, total)

    def within(self, done: int, total: int) -> None:
        """``progress(done, total)`` callback for the work *inside* the current item (the
        scratch attention, minutes on a large scan on CPU): checks the interrupt, so Cancel
        stops it mid-way, and shows the fraction on the bar."""
        compat.throw_if_interrupted()
        fine = self.done * self._FINE + done * self._FINE // max(total, 1)
        self.bar.update_absolute(fine, self.total * self._FINE)
