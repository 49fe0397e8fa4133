"""Checkpoint loader nodes, one per model kind (the face detector's is in ``detector_loader``).

Files are listed from ComfyUI's ``models/oldphoto`` (any sub-folder, any name) and recognised by
their content (keys and shapes, cached by path + mtime), so each loader lists only the files it
can load; the bundled default set's files follow, as ``oldphoto default (bundled)/<file>``.
Loaded models are cached by path + mtime + size on the offload device (the entries of files
that changed or disappeared are dropped at the next load), each as a :class:`~.runtime.Network`
whose patcher ComfyUI's model management loads and frees. Under ComfyUI the cache refers to them
weakly: whoever holds a handle (ComfyUI's node output cache) keeps the weights, and once ComfyUI
drops it (``/free``) the weights are freed and the next run reloads the file. Without ComfyUI
the cache keeps them (nothing else would).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

import torch

from oldphoto_core.errors import CheckpointError, InputError, OldPhotoError
from oldphoto_core.loading import load_model, peek_state_dict
from oldphoto_core.models import BUNDLED_LABEL, BUNDLED_MANIFEST, bundled_files, manifest_of
from oldphoto_core.registry import ArchSpec, detect_architecture

from . import comfy_compat as compat
from .detector_loader import OldPhotoFaceDetectorLoader, clear_detectors
from .runtime import Network, OldPhotoModel
from .types import FACE_MODEL, LOADERS_CATEGORY, MAPPING, SCRATCH_MODEL, VAE

log = logging.getLogger("oldphoto")

__all__ = ["LOADER_NODES", "OldPhotoFaceDetectorLoader", "OldPhotoFaceModelLoader",
           "OldPhotoMappingLoader", "OldPhotoScratchModelLoader", "OldPhotoVAELoader",
           "BUNDLED_PREFIX", "check_model_file", "clear_caches", "files_of_kind", "forget_stale",
           "load_cached", "load_path_cached", "model_path"]

_lock = threading.RLock()
_kinds: dict[str, tuple[tuple[int, int], ArchSpec | None]] = {}
#: path -> (signature, a reference to the loaded network: weak under ComfyUI, see
#: :func:`_reference`)
_models: dict[str, tuple[tuple[int, int], Callable[[], Network | None]]] = {}

FOLDER_HINT = ("ComfyUI/models/oldphoto (any sub-folder and file name: files are recognised by "
               "their content; unzip the published Global/checkpoints.zip and "
               "Face_Enhancement/checkpoints.zip there)")


def _signature(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _current(path: str, sig: tuple[int, int]) -> bool:
    try:
        return _signature(path) == sig
    except OSError:  # deleted or unreadable
        return False


class _Strong:
    """A strong reference with the interface of ``weakref.ref`` (plain Python)."""

    __slots__ = ("net",)

    def __init__(self, net: Network) -> None:
        self.net = net

    def __call__(self) -> Network:
        return self.net


def _reference(net: Network) -> Callable[[], Network | None]:
    """How the cache holds a network: weakly when ComfyUI manages the models (its caches own
    them, and ``/free`` must be able to free them), strongly otherwise (today's behaviour)."""
    return weakref.ref(net) if compat.host_manages_models() else _Strong(net)


def forget_stale() -> None:
    """Drop cached models and classifications of files that changed or are gone, and the
    entries of networks that were freed.

    A model whose file was replaced, renamed or deleted can never be served again; keeping it
    would hold its weights (up to 370 MB each) for the life of the server.
    """
    with _lock:
        for cache in (_models, _kinds):
            for path in [p for p, (sig, _) in cache.items() if not _current(p, sig)]:
                del cache[path]
        for path in [p for p, (_, ref) in _models.items() if ref() is None]:
            del _models[path]


def clear_caches() -> None:
    """Forget recognised files, loaded models and detectors (tests; frees memory)."""
    with _lock:
        _kinds.clear()
        _models.clear()
    clear_detectors()


def classify(path: str) -> ArchSpec | None:
    """The network in a checkpoint file, from its keys and shapes (``None``: not ours)."""
    sig = _signature(path)
    with _lock:
        hit = _kinds.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
    try:
        sd, _ = peek_state_dict(path)
        spec = detect_architecture(sd)
        del sd
        if spec is None:
            log.info("oldphoto: %s is not a network oldphoto knows; not listed", path)
    except OldPhotoError as exc:
        log.warning("oldphoto: skipping %s: %s", path, exc)
        spec = None
    with _lock:
        _kinds[path] = (sig, spec)
    return spec


#: Listed names of the bundled default set's files start with this (e.g.
#: ``oldphoto default (bundled)/VAE_A.safetensors``): visibly not a file of models/oldphoto.
BUNDLED_PREFIX = BUNDLED_LABEL + "/"


def _bundled_paths() -> dict[str, str]:
    """Listed name -> file of the bundled set (each file once, whatever roles it serves)."""
    return {BUNDLED_PREFIX + p.name: os.fspath(p) for p in sorted(set(bundled_files().values()))}


def model_path(name: str) -> str | None:
    """The file behind a listed name: a bundled entry or a file of the model folders."""
    if name.startswith(BUNDLED_PREFIX):
        return _bundled_paths().get(name)
    return compat.full_model_path(name)


def files_of_kind(kind: str) -> list[str]:
    """Listed names of the files that hold a network of ``kind``: those in
    ``models/oldphoto`` first, then the bundled default set's."""
    out = []
    for name in [*compat.list_models(), *_bundled_paths()]:
        path = model_path(name)
        if path is not None:
            spec = classify(path)
            if spec is not None and spec.kind == kind:
                out.append(name)
    return out


def _loader_for(kind: str) -> str:
    return next((cls.DISPLAY_NAME for cls in _MODEL_LOADERS if cls.KIND == kind), kind)


def check_model_file(name: str, kind: str) -> bool | str:
    """``True`` when ``name`` is a file of ``kind`` in the model folders, else the reason."""
    if not isinstance(name, str) or not name:
        return f"no {kind} file chosen; put one in {FOLDER_HINT}"
    path = model_path(name)
    if path is None:
        known = files_of_kind(kind)
        listed = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "") if known else "none"
        return (f"'{name}' not found in the oldphoto model folders "
                f"({', '.join(compat.model_folders())}). Put the file in {FOLDER_HINT}. "
                f"{kind} files found there: {listed}")
    spec = classify(path)
    if spec is None:
        return (f"'{name}' is not a network oldphoto knows (not one of the published "
                f"checkpoints of Bringing Old Photos Back to Life, or unreadable)")
    if spec.kind != kind:
        return (f"'{name}' holds a {spec.title} ({spec.published_as}), not a {kind} model: "
                f"load it with the '{_loader_for(spec.kind)}' node")
    return True


def load_cached(name: str, kind: str) -> tuple[Network, str]:
    """Load (once per path + mtime + size, while loaded) the model file ``name`` of ``kind``.

    Returns:
        ``(network, full path)``; the model is on the offload device, in eval mode.

    Raises:
        InputError: the file is missing or of another kind.
        CheckpointError: the file cannot be read or does not fit the recognised network.
    """
    ok = check_model_file(name, kind)
    if ok is not True:
        raise InputError(ok)
    path = model_path(name)
    assert path is not None  # checked above
    return load_path_cached(path, kind), path


def load_path_cached(path: str | os.PathLike[str], expect: str) -> Network:
    """Load a checkpoint once per path + mtime + size (``expect``: a kind or an arch id).

    The same :class:`~.runtime.Network` is returned while anyone holds it (under ComfyUI) or
    for the life of the process (without ComfyUI); a network that was freed is read again.
    """
    path = os.fspath(path)
    sig = _signature(path)
    with _lock:
        hit = _models.get(path)
        net = hit[1]() if hit is not None and hit[0] == sig else None
    if net is not None:
        arch = net.descriptor.arch
        if expect not in (arch.kind, arch.id):
            raise CheckpointError(f"{path}: expected a {expect} checkpoint, but this file holds "
                                  f"a {arch.title} ({arch.published_as})")
        return net
    forget_stale()  # before loading: an outdated copy of this file must not double the peak
    # ComfyUI runs nodes under torch.inference_mode(): weights created there would be inference
    # tensors, which some modules cannot use (no version counter) and which would stay so in
    # the cache. Load them as normal tensors (they have requires_grad=False anyway).
    with torch.inference_mode(False):
        net = Network(load_model(path, expect=expect, device=compat.offload_device()))
    with _lock:
        _models[path] = (sig, _reference(net))
    log.info("oldphoto: loaded %s from %s", net.descriptor.arch.title, path)
    return net


def _file_state(name: str) -> str:
    """What a loader's output depends on: the file, and the set manifest beside it (the
    settings the loaded model carries)."""
    path = model_path(name) if isinstance(name, str) else None
    if path is None:
        return ""
    mtime, size = _signature(path)
    try:
        manifest = _signature(os.path.join(os.path.dirname(path), BUNDLED_MANIFEST))
    except OSError:  # a file of no set
        manifest = None
    return f"{path}:{mtime}:{size}:{manifest}"


class _ModelLoader:
    """Shared body of the four checkpoint loaders."""

    KIND = ""
    TYPE = ""
    DISPLAY_NAME = ""
    FILE_TOOLTIP = ""
    OUTPUT_TOOLTIP = ""
    CATEGORY = LOADERS_CATEGORY
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (files_of_kind(cls.KIND),
                                            {"tooltip": cls.FILE_TOOLTIP})}}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return check_model_file(model_name, cls.KIND)

    @classmethod
    def IS_CHANGED(cls, model_name, **_):
        return _file_state(model_name)

    def load(self, model_name):
        net, path = load_cached(model_name, self.KIND)
        return (OldPhotoModel(net, model_name, model_set=manifest_of(path)),)


class OldPhotoScratchModelLoader(_ModelLoader):
    KIND = "scratch_detector"
    TYPE = SCRATCH_MODEL
    RETURN_TYPES = (SCRATCH_MODEL,)
    RETURN_NAMES = ("scratch_model",)
    DISPLAY_NAME = "Load Old Photo Scratch Detector"
    FILE_TOOLTIP = ("The scratch detection U-Net: the published "
                    "Global/checkpoints/detection/FT_Epoch_latest.pt (or a copy/conversion).")
    OUTPUT_TOOLTIP = "The scratch detector, for 'Detect Scratches' and 'Restore Old Photo'."
    OUTPUT_TOOLTIPS = (OUTPUT_TOOLTIP,)
    DESCRIPTION = "Loads the scratch detection network from models/oldphoto."


class OldPhotoVAELoader(_ModelLoader):
    KIND = "vae"
    TYPE = VAE
    RETURN_TYPES = (VAE,)
    RETURN_NAMES = ("vae",)
    DISPLAY_NAME = "Load Old Photo VAE"
    FILE_TOOLTIP = ("A VAE of the paper. VAE_A_quality/latest_net_G.pth encodes old photos (for "
                    "'Encode Old Photo'); VAE_B_quality/latest_net_G.pth decodes after the "
                    "quality mapping and VAE_B_scratch/latest_net_G.pth after the scratch or HR "
                    "mapping (for 'Decode Clean Photo'). The three files have the same "
                    "architecture: the file you pick decides the role.")
    OUTPUT_TOOLTIP = "The VAE (its role is the file's: A encodes, B decodes)."
    OUTPUT_TOOLTIPS = (OUTPUT_TOOLTIP,)
    DESCRIPTION = "Loads one of the three VAEs (VAE_A_quality, VAE_B_quality, VAE_B_scratch)."


class OldPhotoMappingLoader(_ModelLoader):
    KIND = "mapping"
    TYPE = MAPPING
    RETURN_TYPES = (MAPPING,)
    RETURN_NAMES = ("mapping",)
    DISPLAY_NAME = "Load Old Photo Mapping"
    FILE_TOOLTIP = ("A latent mapping network: mapping_quality (no mask; decode with "
                    "VAE_B_quality), mapping_scratch (partial non-local, needs the scratch mask; "
                    "decode with VAE_B_scratch) or mapping_Patch_Attention (HR, needs the mask; "
                    "decode with VAE_B_scratch). Recognised from the weights.")
    OUTPUT_TOOLTIP = "The mapping network for 'Old Photo Latent Map'."
    OUTPUT_TOOLTIPS = (OUTPUT_TOOLTIP,)
    DESCRIPTION = "Loads a mapping network (quality, scratch or HR patch attention)."


FACE_SIZES = ("auto", "256", "512")


def _face_size(choice: str, name: str) -> int:
    if choice == "auto":
        low = name.lower()
        size = 512 if ("512" in low or "facesr" in low) else 256
        log.info("oldphoto: face model '%s' runs at %d px (face_size auto, from the file name; "
                 "set it explicitly if this is wrong)", name, size)
        return size
    return int(choice)


class OldPhotoFaceModelLoader(_ModelLoader):
    KIND = "face_enhancer"
    TYPE = FACE_MODEL
    RETURN_TYPES = (FACE_MODEL,)
    RETURN_NAMES = ("face_model",)
    DISPLAY_NAME = "Load Old Photo Face Enhancer"
    FILE_TOOLTIP = ("The SPADE face generator: Face_Enhancement/checkpoints/Setting_9_epoch_100/"
                    "latest_net_G.pth (256 px) or FaceSR_512/latest_net_G.pth (512 px).")
    OUTPUT_TOOLTIP = "The face enhancer with its crop size, for 'Enhance Faces'."
    OUTPUT_TOOLTIPS = (OUTPUT_TOOLTIP,)
    DESCRIPTION = ("Loads the face enhancement generator. Both published files have the same "
                   "weights layout, so the crop size is chosen here.")

    @classmethod
    def INPUT_TYPES(cls):
        spec = super().INPUT_TYPES()
        spec["required"]["face_size"] = (FACE_SIZES, {
            "default": "auto",
            "tooltip": "Crop size the model was trained for: 256 for Setting_9_epoch_100, 512 "
                       "for FaceSR_512. 'auto' picks 512 when the file or folder name says 512 "
                       "or FaceSR, else 256. 'Enhance Faces' aligns the faces at this "
                       "size."})
        return spec

    @classmethod
    def VALIDATE_INPUTS(cls, model_name, face_size="auto"):
        if face_size not in FACE_SIZES:
            return f"face_size must be one of {FACE_SIZES}, got {face_size!r}"
        return check_model_file(model_name, cls.KIND)

    def load(self, model_name, face_size="auto"):
        net, path = load_cached(model_name, self.KIND)
        return (OldPhotoModel(net, model_name, face_size=_face_size(face_size, model_name),
                              model_set=manifest_of(path)),)


_MODEL_LOADERS = (OldPhotoScratchModelLoader, OldPhotoVAELoader, OldPhotoMappingLoader,
                  OldPhotoFaceModelLoader)
LOADER_NODES = {cls.__name__: cls for cls in (*_MODEL_LOADERS, OldPhotoFaceDetectorLoader)}
