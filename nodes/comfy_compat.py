"""The only module of the node pack that touches ComfyUI (``comfy.*``, ``folder_paths``).

Everything ComfyUI provides that the nodes use goes through here, with a plain-Python fallback,
so that the nodes import and run in plain pytest, in scripts and in other hosts:

* devices: ``comfy.model_management`` (``--cpu`` is honoured) or CUDA/CPU;
* models: each network is wrapped in a ``comfy.model_patcher.ModelPatcher`` and loaded with
  ``load_models_gpu``, so ComfyUI loads, offloads and frees it like its own models (``/free``,
  "Unload models", ``--highvram``/``--lowvram``/``--cpu``); without ComfyUI a plain stand-in
  moves the module to the device for the run and back after it;
* memory: the free memory of a device (to size batches) and ComfyUI's out-of-memory exception;
* progress: ``comfy.utils.ProgressBar`` or a silent counter;
* interruption: ComfyUI's flag, or :func:`request_interrupt` here (tests);
* model folders: ``models/oldphoto`` registered with explicit extensions (paths a user configured in
  ``extra_model_paths.yaml`` are kept), ``models/insightface`` for the face detector; without
  ComfyUI, ``$OLDPHOTO_MODELS`` (else ``./models/oldphoto``) and ``$OLDPHOTO_INSIGHTFACE`` (else
  ``./models/insightface``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

log = logging.getLogger("oldphoto")

try:  # ComfyUI present
    import comfy.model_management as _mm
    import comfy.utils as _cutils
    import folder_paths as _fp
except ImportError:  # plain Python
    _mm = _cutils = _fp = None

try:
    from comfy.model_patcher import ModelPatcher as _ModelPatcher
except ImportError:
    _ModelPatcher = None

HAVE_COMFY = _fp is not None

#: ComfyUI's folder name of our checkpoints (``models/oldphoto``).
MODELS_FOLDER = "oldphoto"
#: insightface's own convention, shared with other node packs (``models/insightface``).
INSIGHTFACE_FOLDER = "insightface"
#: Checkpoint extensions listed in ``models/oldphoto`` (what ``oldphoto_core`` can read).
MODEL_EXTENSIONS = frozenset({".pth", ".pt", ".ckpt", ".bin", ".safetensors"})

__all__ = ["HAVE_COMFY", "MODELS_FOLDER", "INSIGHTFACE_FOLDER", "MODEL_EXTENSIONS",
           "Interrupted", "PlainPatcher", "ProgressBar", "free_bytes", "free_memory",
           "full_model_path", "get_torch_device", "host_manages_models", "input_directory",
           "insightface_folders", "intermediate_device", "is_out_of_memory", "list_models",
           "model_folders", "model_patcher", "models_loaded", "offload_device",
           "register_model_folders", "request_interrupt", "soft_empty_cache",
           "throw_if_interrupted"]


# -- devices and memory -------------------------------------------------------------------------

def get_torch_device() -> torch.device:
    """Where networks run: ComfyUI's device (CPU with ``--cpu``), else CUDA if present."""
    if _mm is not None:
        return _mm.get_torch_device()
    env = os.environ.get("OLDPHOTO_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where models wait between runs (ComfyUI's offload device; the CPU otherwise)."""
    if _mm is not None:
        return _mm.unet_offload_device()
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where IMAGE/MASK/latent tensors passed between nodes live (the CPU unless --gpu-only)."""
    if _mm is not None:
        return _mm.intermediate_device()
    return torch.device("cpu")


def free_memory(nbytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload other models until ``nbytes`` are free on ``device``."""
    if _mm is not None and device.type != "cpu":
        _mm.free_memory(nbytes, device)


def soft_empty_cache() -> None:
    """Give cached accelerator memory back (after a model left the device)."""
    if _mm is not None:
        _mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def free_bytes(device: torch.device) -> int | None:
    """Memory still free on ``device`` (bytes), to size batches; ``None`` when unknown.

    ComfyUI's ``get_free_memory`` (device memory plus what PyTorch holds unused; the available
    RAM on the CPU); otherwise the same for CUDA, and for the CPU the available memory as the
    core's memory check sees it (``$OLDPHOTO_AVAILABLE_MEMORY``, cgroup limits).
    """
    if device.type == "cpu":
        from oldphoto_core.runtime.memory import available_bytes
        return available_bytes("cpu")
    if _mm is not None:
        return int(_mm.get_free_memory(device))
    if device.type == "cuda" and torch.cuda.is_available():
        stats = torch.cuda.memory_stats(device)
        unused = (stats.get("reserved_bytes.all.current", 0)
                  - stats.get("active_bytes.all.current", 0))
        return int(torch.cuda.mem_get_info(device)[0] + unused)
    return None


_TORCH_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (ComfyUI's ``OOM_EXCEPTION``).

    A CPU allocation failure is not one: as for ComfyUI's own nodes, it is not retried.
    """
    oom = getattr(_mm, "OOM_EXCEPTION", _TORCH_OOM) if _mm is not None else _TORCH_OOM
    if oom is Exception:  # ComfyUI's fallback on a torch without OutOfMemoryError
        return "out of memory" in str(exc).lower()
    return isinstance(exc, oom)


# -- models under the host's memory management -------------------------------------------------

class PlainPatcher:
    """Stand-in for ``comfy.model_patcher.ModelPatcher`` without ComfyUI: the module and the
    devices it runs on and waits on (:func:`models_loaded` moves it for a run and back)."""

    def __init__(self, model: torch.nn.Module, load_device: torch.device,
                 offload_device: torch.device, size: int = 0) -> None:
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.size = size

    def model_size(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"PlainPatcher({type(self.model).__name__}, {self.size / 2**20:.1f} MiB)"


def host_manages_models() -> bool:
    """Whether ComfyUI's model management owns the loaded networks (their patchers).

    Then the node pack keeps no strong reference of its own to a loaded network: whoever holds
    the patcher (ComfyUI's node output cache, a node instance in its object cache) keeps it
    alive, and ComfyUI unloads it (``/free``, "Unload models", memory pressure).
    """
    return _mm is not None and _ModelPatcher is not None


def model_patcher(module: torch.nn.Module, size: int) -> object:
    """Wrap a loaded network for model management: a ``ModelPatcher`` (load device: ComfyUI's
    device; offload device: ``unet_offload_device()``, the GPU itself under ``--highvram``), or
    a :class:`PlainPatcher` without ComfyUI."""
    if host_manages_models():
        return _ModelPatcher(module, load_device=get_torch_device(),
                             offload_device=offload_device(), size=size)
    return PlainPatcher(module, get_torch_device(), offload_device(), size)


def _module_device(module: torch.nn.Module) -> torch.device | None:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return None


@contextmanager
def models_loaded(patchers: Sequence[object], memory_required: int = 0) -> Iterator[torch.device]:
    """Have the networks on the device for the ``with`` block; the device is yielded.

    With ComfyUI: ``load_models_gpu(patchers, memory_required, force_full_load=True)``, so that
    ComfyUI first frees what it must (``memory_required``: the working memory of the run, on
    top of the weights) and then keeps the networks loaded afterwards as long as it sees fit,
    exactly as its own models (``--highvram`` keeps them on the GPU, ``--cpu`` never moves
    them, ``/free`` and "Unload models" release them). They load whole: our layers cannot run
    with weights left on the CPU, which ``--lowvram`` partial loading needs.

    Without ComfyUI (today's behaviour): other memory is asked for, the modules move to the
    device and back to their offload device in a ``finally``, so that an error or an interrupt
    never leaves them on the GPU.

    Modules are moved outside ``inference_mode`` (ComfyUI runs nodes inside it): weights
    created there would be inference tensors, which stay so in the caches.
    """
    patchers = list(patchers)
    if host_manages_models():
        with torch.inference_mode(False):
            _mm.load_models_gpu(patchers, memory_required=memory_required,
                                force_full_load=True)
        yield patchers[0].load_device if patchers else get_torch_device()
        return
    device = get_torch_device()
    if device.type != "cpu":
        free_memory(sum(p.model_size() for p in patchers) + memory_required, device)
    moved = []
    try:
        for p in patchers:
            if _module_device(p.model) != device:
                with torch.inference_mode(False):
                    p.model.to(device)
                moved.append(p)
        yield device
    finally:
        for p in moved:
            with torch.inference_mode(False):
                p.model.to(p.offload_device)
        if moved and device.type != "cpu":
            soft_empty_cache()


# -- progress and interruption ------------------------------------------------------------------

class _PlainProgressBar:
    """Stand-in for ``comfy.utils.ProgressBar`` (same interface, records the position)."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total, self.current, self.node_id = total, 0, node_id

    def update_absolute(self, value: int, total: int | None = None, preview=None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


ProgressBar = _cutils.ProgressBar if _cutils is not None else _PlainProgressBar


class Interrupted(Exception):
    """Raised in plain Python when :func:`request_interrupt` was called (ComfyUI raises its own
    ``InterruptProcessingException``)."""


_interrupt_lock = threading.Lock()
_interrupt_requested = False


def request_interrupt(value: bool = True) -> None:
    """Plain-Python counterpart of ComfyUI's cancel button (used by tests and scripts)."""
    global _interrupt_requested
    if _mm is not None:
        _mm.interrupt_current_processing(value)
        return
    with _interrupt_lock:
        _interrupt_requested = value


def throw_if_interrupted() -> None:
    """Raise if the user cancelled the run; call it inside every loop over images or faces."""
    global _interrupt_requested
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()
        return
    with _interrupt_lock:
        if _interrupt_requested:
            _interrupt_requested = False
            raise Interrupted("processing interrupted")


# -- model folders ------------------------------------------------------------------------------

def register_model_folders() -> None:
    """Register ``models/oldphoto`` and ``models/insightface`` with ComfyUI (idempotent).

    Paths that ``extra_model_paths.yaml`` already added for these names are kept (they come
    first); the default folder is appended. ``oldphoto`` is ours: our extensions are added to
    any that were there (a folder created from the yaml has an empty set, which ComfyUI reads
    as "every file"). ``insightface`` is shared with other packs (face swap, IP-Adapter ...):
    its extensions are left as they are, since narrowing an empty set ("every file") to
    ``.onnx`` would hide their files from their own loaders; we list its packs from the
    folders themselves (:func:`insightface_folders`).
    """
    if _fp is None:
        return
    for name in (MODELS_FOLDER, INSIGHTFACE_FOLDER):
        _fp.add_model_folder_path(name, os.path.join(_fp.models_dir, name))
    paths, known = _fp.folder_names_and_paths[MODELS_FOLDER]
    _fp.folder_names_and_paths[MODELS_FOLDER] = (paths, set(known) | set(MODEL_EXTENSIONS))


def _plain_folder(env: str, default: str) -> list[str]:
    value = os.environ.get(env)
    return [value] if value else [os.path.join("models", default)]


def model_folders() -> list[str]:
    """Every folder searched for oldphoto checkpoints, in priority order."""
    if _fp is not None:
        return _fp.get_folder_paths(MODELS_FOLDER)
    return _plain_folder("OLDPHOTO_MODELS", MODELS_FOLDER)


def insightface_folders() -> list[str]:
    """Every ``models/insightface`` folder (insightface packs live in ``models/<pack>/``)."""
    if _fp is not None:
        return _fp.get_folder_paths(INSIGHTFACE_FOLDER)
    return _plain_folder("OLDPHOTO_INSIGHTFACE", INSIGHTFACE_FOLDER)


def list_models() -> list[str]:
    """Checkpoint files under the model folders, as relative paths with ``/`` (sorted)."""
    if _fp is not None:
        return _fp.get_filename_list(MODELS_FOLDER)
    found: set[str] = set()
    for folder in model_folders():
        root = Path(folder)
        if root.is_dir():
            found.update(p.relative_to(root).as_posix() for p in root.rglob("*")
                         if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS)
    return sorted(found)


def full_model_path(name: str) -> str | None:
    """The file behind a listed name, or ``None`` (never escapes the model folders)."""
    if _fp is not None:
        return _fp.get_full_path(MODELS_FOLDER, name)
    rel = os.path.relpath(os.path.join("/", name), "/")
    for folder in model_folders():
        path = os.path.join(folder, rel)
        if os.path.isfile(path):
            return path
    return None


def input_directory() -> str | None:
    """ComfyUI's input folder (``None`` in plain Python)."""
    return _fp.get_input_directory() if _fp is not None else None


register_model_folders()
