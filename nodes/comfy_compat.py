"""The only module of the node pack that touches ComfyUI (``comfy.*``, ``folder_paths``).

Everything ComfyUI provides that the nodes use goes through here, with a plain-Python fallback,
so that the nodes import and run in plain pytest, in scripts and in other hosts:

* devices: ``comfy.model_management`` (``--cpu`` is honoured) or CUDA/CPU;
* memory: ``free_memory`` before a model goes to the device, ``soft_empty_cache`` after;
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
from pathlib import Path

import torch

log = logging.getLogger("oldphoto")

try:  # ComfyUI present
    import comfy.model_management as _mm
    import comfy.utils as _cutils
    import folder_paths as _fp
except ImportError:  # plain Python
    _mm = _cutils = _fp = None

HAVE_COMFY = _fp is not None

#: ComfyUI's folder name of our checkpoints (``models/oldphoto``).
MODELS_FOLDER = "oldphoto"
#: insightface's own convention, shared with other node packs (``models/insightface``).
INSIGHTFACE_FOLDER = "insightface"
#: Checkpoint extensions listed in ``models/oldphoto`` (what ``oldphoto_core`` can read).
MODEL_EXTENSIONS = frozenset({".pth", ".pt", ".ckpt", ".bin", ".safetensors"})
INSIGHTFACE_EXTENSIONS = frozenset({".onnx"})

__all__ = ["HAVE_COMFY", "MODELS_FOLDER", "INSIGHTFACE_FOLDER", "MODEL_EXTENSIONS",
           "Interrupted", "ProgressBar", "free_memory", "full_model_path", "get_torch_device",
           "input_directory", "insightface_folders", "intermediate_device", "list_models",
           "model_folders", "offload_device", "register_model_folders", "request_interrupt",
           "soft_empty_cache", "throw_if_interrupted"]


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
    first); the default folder is appended; our extensions are added to any that were there
    (a folder created from the yaml has an empty set, which ComfyUI reads as "every file").
    """
    if _fp is None:
        return
    for name, exts in ((MODELS_FOLDER, MODEL_EXTENSIONS),
                       (INSIGHTFACE_FOLDER, INSIGHTFACE_EXTENSIONS)):
        _fp.add_model_folder_path(name, os.path.join(_fp.models_dir, name))
        paths, known = _fp.folder_names_and_paths[name]
        _fp.folder_names_and_paths[name] = (paths, set(known) | set(exts))


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
