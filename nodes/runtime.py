"""What every runner node shares: the model handles passed between nodes, models under the host's
memory management, batches in chunks that fit, the out-of-memory fallback, progress and
interruption."""

from __future__ import annotations

import ctypes
import itertools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.loading import ModelDescriptor
from oldphoto_core.models import REFERENCE_SETTINGS, ModelSetManifest
from oldphoto_core.runtime.memory import USABLE_SHARE, WORKING_MEMORY
from oldphoto_core.runtime.numerics import use_precision
from oldphoto_core.runtime.progress import responsive

from . import comfy_compat as compat

log = logging.getLogger("oldphoto")

__all__ = ["PRECISION_CHOICES", "FaceDetectorHandle", "Network", "OldPhotoModel", "Steps",
           "check_precision", "chunk_size", "expect_model", "item_bytes", "models_on_device",
           "precision_input", "release_freed_host_memory", "release_host_memory_soon",
           "run_in_chunks", "each_image"]

# Activation memory asked for on top of the weights when no estimate is given: a rough upper
# bound for a ~1 Mpx photo through the mapping (ComfyUI frees other models to make room).
_WORKING_MEMORY = 1536 * 2**20

#: The ``precision`` choices of the nodes that run networks (see
#: :mod:`oldphoto_core.runtime.numerics`): strict float32 (the parity tolerances hold) or TF32 on
#: recent NVIDIA GPUs (faster, outside them).
PRECISION_CHOICES = ("exact", "tf32")

#: glibc's ``malloc_trim``, ``False`` where there is none; looked up once.
_malloc_trim: Callable[[int], int] | bool | None = None

_T = TypeVar("_T")
_ids = itertools.count()


def _nbytes(desc: ModelDescriptor) -> int:
    return sum(t.numel() * t.element_size() for t in desc.model.state_dict().values())


class Network:
    """A loaded checkpoint under the host's model management: the core's descriptor and the
    patcher around its module (ComfyUI's ``ModelPatcher``, see
    :func:`~.comfy_compat.model_patcher`).

    Whoever holds a ``Network`` keeps its weights in memory: the handles that loader nodes
    return (held by ComfyUI's output cache) and the all-in-one node's instance (held by
    ComfyUI's object cache). The loaders' own cache refers to it weakly under ComfyUI, so
    that when ComfyUI drops those (``/free``), the weights are freed and reloaded from disk
    on the next run.
    """

    __slots__ = ("descriptor", "patcher", "id", "__weakref__")

    def __init__(self, descriptor: ModelDescriptor) -> None:
        self.descriptor = descriptor
        self.patcher = compat.model_patcher(descriptor.model, _nbytes(descriptor))
        self.id = next(_ids)
        # once freed (ComfyUI let go of it), its weights go back to the operating system
        weakref.finalize(self, release_host_memory_soon)

    def __repr__(self) -> str:
        return f"Network({self.descriptor!r})"


@dataclass(frozen=True, eq=False)
class OldPhotoModel:
    """A loaded checkpoint as passed between nodes (OLDPHOTO_VAE, _MAPPING, ...).

    Attributes:
        network: the model under model management (shared with the loader's cache and other
            handles of the same file; nodes never change its weights).
        name: the file as listed in ``models/oldphoto``.
        face_size: face models only: the crop size the model runs at (256 or 512).
        model_set: the manifest of the set the file belongs to (its output tone, detector
            threshold), None for a published checkpoint or a loose file.
    """

    network: Network
    name: str
    face_size: int | None = None
    model_set: ModelSetManifest | None = None

    @property
    def settings(self) -> ModelSetManifest:
        """This file's set's settings (the reference's for a file of no set)."""
        return self.model_set if self.model_set is not None else REFERENCE_SETTINGS

    @property
    def tone(self) -> str:
        """The output tone this file's set asks for."""
        return self.settings.tone

    @property
    def scratch_threshold(self) -> float:
        """The threshold this file's set runs its detector at."""
        return self.settings.detector_threshold

    @property
    def descriptor(self) -> ModelDescriptor:
        """The core's model."""
        return self.network.descriptor

    @property
    def patcher(self) -> object:
        """What ComfyUI's model management loads and frees."""
        return self.network.patcher

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


def precision_input() -> tuple:
    """The optional ``precision`` widget of the nodes that run networks."""
    return (PRECISION_CHOICES, {
        "default": "exact",
        "tooltip": "exact: strict float32, as the reference (results within the parity "
                   "tolerances). tf32: TF32 matrix maths on NVIDIA GPUs from Ampere on, faster "
                   "but outside those tolerances. No effect on the CPU."})


def check_precision(value: object, *, node: str) -> str:
    if value not in PRECISION_CHOICES:
        raise InputError(f"{node}: precision must be one of {PRECISION_CHOICES}, got {value!r}")
    return str(value)


def item_bytes(mode: str, pixels: int, *, tiled: bool = False) -> int:
    """Working memory of one photo of ``pixels`` through a network of restoration ``mode``
    (``quality``, ``scratch``, ``hr``: :data:`oldphoto_core.runtime.memory.WORKING_MEMORY`)."""
    return WORKING_MEMORY[(mode, tiled)].bytes(pixels)


@contextmanager
def models_on_device(*models: OldPhotoModel | Network | None, memory_required: int | None = None,
                     precision: str = "exact") -> Iterator[torch.device]:
    """Have the networks on the device for a ``with`` block, in ``precision``; yields the device.

    The networks are loaded through the host's model management
    (:func:`~.comfy_compat.models_loaded`: ComfyUI's ``load_models_gpu``, which first frees
    ``memory_required`` of working memory besides the weights, and keeps them loaded after the
    block as it keeps its own models; without ComfyUI they go back to the offload device in a
    ``finally``). Inside the block, long computations report in small steps
    (:func:`oldphoto_core.runtime.progress.responsive`), so Cancel lands within a second. Memory
    the run freed goes back to the operating system afterwards.
    """
    nets: list[Network] = []
    for m in models:
        net = m.network if isinstance(m, OldPhotoModel) else m
        if net is not None and not any(net is n for n in nets):
            nets.append(net)
    need = _WORKING_MEMORY if memory_required is None else int(memory_required)
    try:
        with compat.models_loaded([n.patcher for n in nets], need) as device, \
                use_precision(precision), responsive():  # a user waits on Cancel
            yield device
    finally:
        release_freed_host_memory()


def chunk_size(device: torch.device, per_item: int, n: int) -> int:
    """How many of ``n`` items of ``per_item`` bytes of working memory run together on
    ``device``: as many as its free memory holds (with the core's safety share), at least one.
    One at a time when the free memory is unknown."""
    free = compat.free_bytes(device)
    if free is None or n <= 1:
        return 1
    return max(1, min(n, int(free * USABLE_SHARE) // max(int(per_item), 1)))


def run_in_chunks(n: int, work: Callable[[int, int, bool], _T], *, steps: Steps,
                  device: torch.device, per_item: int, can_tile: bool = True,
                  max_chunk: int | None = None, node: str = "oldphoto") -> list[_T]:
    """``work(start, stop, tile)`` over ``range(n)`` in chunks that fit ``device``.

    The chunk size comes from the device's free memory (:func:`chunk_size`, at most
    ``max_chunk``); the interrupt is
    checked before each chunk and the bar advances by the chunk (``steps.within`` reports
    inside one). On a device out-of-memory error (ComfyUI's ``OOM_EXCEPTION``), as ComfyUI's
    VAE and upscale nodes do, the chunk is run again: first in exact strips (``tile=True``,
    when ``can_tile``), then with half as many items, and the error is raised only for one
    item in strips. The retry happens outside the ``except`` block, so that the failed
    attempt's tensors are freed first.

    Returns:
        The results of the chunks, in order.
    """
    size = chunk_size(device, per_item, n if max_chunk is None else min(n, max_chunk))
    tile = False
    out: list[_T] = []
    i = 0
    while i < n:
        steps.check()
        k = min(size, n - i)
        steps.chunk = k
        exhausted = (tile or not can_tile) and k == 1  # nothing smaller left to try
        oom = False
        try:
            result = work(i, i + k, tile)
        except Exception as exc:
            if exhausted or not compat.is_out_of_memory(exc):
                raise
            oom = True
        if oom:  # retry smaller, now that the failed attempt's tensors are gone
            compat.soft_empty_cache()
            if can_tile and not tile:
                tile = True
                log.warning("%s: out of device memory; running %d image(s) again in strips",
                            node, k)
            else:
                size = max(1, k // 2)
                log.warning("%s: out of device memory; running %d image(s) at a time", node,
                            size)
            continue
        out.append(result)
        i += k
        steps.advance(k)
    steps.chunk = 1
    return out


def each_image(n: int, work: Callable[[int], _T], *, node: str = "oldphoto") -> list[_T]:
    """``work(i)`` for each of ``n`` batch items, in order, on the host: the progress bar and
    the interrupt as in :func:`run_in_chunks` (which runs it, one item per chunk, no retry:
    what runs here is not on a device)."""
    return run_in_chunks(n, lambda start, stop, tile: work(start), steps=Steps(n),
                         device=torch.device("cpu"), per_item=0, can_tile=False, max_chunk=1,
                         node=node)


_trim_lock = threading.Lock()
_trim_pending = False
#: Seconds between a network's end and the trim: its weights are freed just after its
#: finalizer runs, and ComfyUI's ``/free`` collects garbage right after dropping its caches.
TRIM_DELAY = 1.0


def release_host_memory_soon() -> None:
    """:func:`release_freed_host_memory` in :data:`TRIM_DELAY` seconds, on a timer thread
    (calls close together share one trim).

    Run when a network is freed: reloading networks (after a ``/free``, or when ComfyUI's
    cache let go of a loader's output) leaves their freed weights scattered through glibc's
    arenas, and without a trim the server would keep them as resident memory (measured with the
    published sizes: 200 MB of 360 MB kept).
    """
    global _trim_pending
    with _trim_lock:
        if _trim_pending:
            return
        _trim_pending = True

    def trim() -> None:
        global _trim_pending
        with _trim_lock:
            _trim_pending = False
        release_freed_host_memory()

    timer = threading.Timer(TRIM_DELAY, trim)
    timer.daemon = True
    timer.start()


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
        #: items in the chunk that runs now (:func:`run_in_chunks`), for :meth:`within`
        self.chunk = 1
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
        """``progress(done, total)`` callback for the work *inside* the current item or chunk
        (the scratch attention, minutes on a large scan on CPU): checks the interrupt, so Cancel
        stops it mid-way, and shows the fraction on the bar."""
        compat.throw_if_interrupted()
        fine = self.done * self._FINE + done * self._FINE * self.chunk // max(total, 1)
        self.bar.update_absolute(fine, self.total * self._FINE)
