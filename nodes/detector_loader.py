"""The face detector loader: insightface (SCRFD) or dlib, created once per setting.

Detectors are not checkpoints of ours: insightface packs live in ComfyUI's
``models/insightface/models/<pack>/`` (insightface's own convention, shared with other packs)
and dlib's models ship in the ``face-recognition-models`` package. Each detector is kept
(most recently used first) so that a graph run again does not rebuild an onnxruntime session.
"""

from __future__ import annotations

import importlib.util
import os
import threading

from oldphoto_core.errors import OldPhotoError
from oldphoto_core.faces import find_insightface_model, make_face_detector

from . import comfy_compat as compat
from .runtime import FaceDetectorHandle
from .types import FACE_DETECTOR, LOADERS_CATEGORY

__all__ = ["DEFAULT_PACK", "DETECTOR_BACKENDS", "MAX_DETECTORS", "OldPhotoFaceDetectorLoader",
           "clear_detectors", "insightface_packs", "insightface_root"]

_lock = threading.RLock()
_detectors: dict[tuple, object] = {}
#: Face detectors kept (most recently used): one per (backend, folder, pack, threshold) would
#: grow without bound while a user tries thresholds (an onnxruntime session each).
MAX_DETECTORS = 2

DETECTOR_BACKENDS = ("auto", "insightface", "dlib")
DEFAULT_PACK = "buffalo_l"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def insightface_packs() -> list[str]:
    """insightface model packs (``models/insightface/models/<pack>``), ``buffalo_l`` first."""
    packs = {DEFAULT_PACK}
    for folder in compat.insightface_folders():
        base = os.path.join(folder, "models")
        if os.path.isdir(base):
            packs.update(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
    return [DEFAULT_PACK] + sorted(packs - {DEFAULT_PACK})


def insightface_root(pack: str) -> str | None:
    """The first insightface folder holding ``pack``'s detector, else the first folder."""
    folders = compat.insightface_folders()
    for folder in folders:
        try:
            find_insightface_model(folder, pack=pack)
            return folder
        except OldPhotoError:
            continue
    return folders[0] if folders else None


def _backend_problem(backend: str, pack: str) -> str | None:
    insight_ok = _has("insightface") and _has("onnxruntime")
    dlib_ok = _has("dlib") and _has("face_recognition_models")
    root = insightface_root(pack)
    has_files = False
    if root is not None:
        try:
            find_insightface_model(root, pack=pack)
            has_files = True
        except OldPhotoError:
            pass
    hint = 'pip install "oldphoto[faces]" (or the face packages in requirements.txt)'
    if backend == "insightface":
        if not insight_ok:
            return f"the insightface backend needs the insightface and onnxruntime packages: {hint}"
        if not has_files:
            where = ", ".join(os.path.join(f, "models", pack) for f in
                              compat.insightface_folders())
            return f"insightface: det_10g.onnx of the '{pack}' pack not found in {where}"
    elif backend == "dlib":
        if not dlib_ok:
            return f"the dlib backend needs dlib-bin and face-recognition-models: {hint}"
    elif not (dlib_ok or (insight_ok and has_files)):
        return (f"no face detector available: install dlib-bin and face-recognition-models "
                f"({hint}), or insightface + onnxruntime with det_10g.onnx in "
                f"models/insightface/models/{pack}/")
    return None


class OldPhotoFaceDetectorLoader:
    DISPLAY_NAME = "Load Old Photo Face Detector"
    CATEGORY = LOADERS_CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (FACE_DETECTOR,)
    RETURN_NAMES = ("face_detector",)
    OUTPUT_TOOLTIPS = ("A face detector giving boxes and 5 landmarks, for 'Detect Faces'.",)
    DESCRIPTION = ("Creates a face detector: insightface SCRFD (det_10g.onnx from "
                   "models/insightface/models/<pack>/, never downloaded) or dlib (HOG + 68-point "
                   "predictor, as the reference).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "backend": (DETECTOR_BACKENDS, {
                "default": "auto",
                "tooltip": "insightface (SCRFD, more faces, needs det_10g.onnx), dlib (what the "
                           "reference uses) or auto (insightface when its files are there, "
                           "else dlib)."}),
            "insightface_pack": (insightface_packs(), {
                "default": DEFAULT_PACK,
                "tooltip": "insightface model pack folder under models/insightface/models/ "
                           "holding det_10g.onnx (ignored by dlib)."}),
            "threshold": ("FLOAT", {
                "default": 0.5, "min": 0.05, "max": 0.99, "step": 0.01,
                "tooltip": "insightface detection score threshold (ignored by dlib)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, backend, insightface_pack=DEFAULT_PACK, threshold=0.5):
        if backend not in DETECTOR_BACKENDS:
            return f"backend must be one of {DETECTOR_BACKENDS}, got {backend!r}"
        if not isinstance(insightface_pack, str) or not insightface_pack or \
                os.sep in insightface_pack or insightface_pack.startswith("."):
            return f"insightface_pack must be a folder name, got {insightface_pack!r}"
        problem = _backend_problem(backend, insightface_pack)
        return True if problem is None else problem

    def load(self, backend, insightface_pack=DEFAULT_PACK, threshold=0.5):
        root = insightface_root(insightface_pack)
        key = (backend, root, insightface_pack, float(threshold))
        with _lock:
            det = _detectors.pop(key, None)
            if det is not None:
                _detectors[key] = det  # most recently used last
        if det is None:
            det = make_face_detector(backend, insightface_root=root, pack=insightface_pack,
                                     threshold=float(threshold))
            with _lock:
                _detectors[key] = det
                while len(_detectors) > MAX_DETECTORS:
                    del _detectors[next(iter(_detectors))]
        return (FaceDetectorHandle(det, getattr(det, "name", backend)),)


def clear_detectors() -> None:
    """Forget every kept detector (tests; frees their sessions)."""
    with _lock:
        _detectors.clear()
