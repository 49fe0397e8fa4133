"""Face detection: one interface, two optional backends (insightface SCRFD, dlib HOG).

A detector takes one ``[H, W, 3]`` uint8 RGB array and returns :class:`Face` records (box,
score, 5 landmarks). :func:`detect_faces` runs it over an NCHW batch; :func:`make_face_detector`
builds one by name. Backends import their packages lazily: a missing package gives an
:class:`~oldphoto_core.errors.OldPhotoError` with the install command, never a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import InputError, OldPhotoError
from ._image import check_images, rgb_uint8_hwc
from .types import Face

__all__ = ["DETECTOR_KINDS", "FaceDetector", "detect_faces", "find_insightface_model",
           "make_face_detector"]

#: Names accepted by :func:`make_face_detector`.
DETECTOR_KINDS = ("auto", "insightface", "dlib", "off")
INSTALL_HINT = 'pip install "oldphoto[faces]"'
DEFAULT_PACK = "buffalo_l"
DEFAULT_DET_FILE = "det_10g.onnx"


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces with five landmarks in one RGB image."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces of one ``[H, W, 3]`` uint8 RGB image (``image_index`` 0), best first or in
        the backend's own order."""
        ...


def detect_faces(images: torch.Tensor, detector: FaceDetector) -> list[list[Face]]:
    """Detect faces in every image of a batch.

    Args:
        images: ``[B, C, H, W]`` float in [0, 1], C in {1, 3, 4} (gray is replicated, alpha
            ignored). Quantised to 8 bits (``floor(255 v + 0.5)``) for the detector.
        detector: a :class:`FaceDetector` (see :func:`make_face_detector`).

    Returns:
        Per batch item, its faces (``image_index`` set), possibly empty.

    Raises:
        InputError: bad images or detector.
    """
    check_images(images)
    if not callable(getattr(detector, "detect", None)):
        raise InputError(f"detector: expected a FaceDetector, got {type(detector).__name__}")
    out: list[list[Face]] = []
    for i in range(images.shape[0]):
        found = detector.detect(rgb_uint8_hwc(images, i))
        out.append([f.with_(image_index=i) for f in found])
    return out


def find_insightface_model(root: str | os.PathLike[str], *, pack: str = DEFAULT_PACK,
                           filename: str = DEFAULT_DET_FILE) -> Path:
    """Locate the SCRFD model under insightface's folder convention; never downloads.

    ``root`` may be the model file itself, the pack folder holding it, or an insightface root
    (ComfyUI's ``models/insightface``) holding ``models/<pack>/<filename>``.

    Raises:
        OldPhotoError: the file is not there; the message names the folders and file.
    """
    p = Path(root).expanduser()
    candidates = [p] if p.suffix == ".onnx" else [p / filename, p / "models" / pack / filename,
                                                  p / pack / filename]
    for c in candidates:
        if c.is_file():
            return c
    tried = "\n  ".join(str(c) for c in candidates)
    raise OldPhotoError(
        f"insightface face detector: {filename} not found. Looked for:\n  {tried}\n"
        f"Put the '{pack}' pack's {filename} (from insightface's model zoo) in "
        f"{p / 'models' / pack}/ — oldphoto never downloads it.")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def make_face_detector(kind: str = "auto", *, insightface_root: str | os.PathLike[str] | None
                       = None, pack: str = DEFAULT_PACK, det_size: Sequence[int] = (640, 640),
                       threshold: float = 0.5, providers: Sequence[str] | None = None,
                       dlib_upsample: int = 0) -> FaceDetector | None:
    """Build a face detector by name.

    Args:
        kind: ``"insightface"`` (SCRFD ``det_10g.onnx`` found by :func:`find_insightface_model`
            under ``insightface_root``), ``"dlib"`` (HOG + 68-point predictor of the
            ``face-recognition-models`` package, as the reference), ``"auto"`` (insightface when
            its files and packages are present, else dlib) or ``"off"`` (returns ``None``).
        insightface_root: ComfyUI's ``models/insightface`` (or the pack folder, or the file).
        pack: insightface model pack folder name.
        det_size, threshold, providers: SCRFD input size ``(w, h)``, score threshold and
            onnxruntime execution providers (default CPU).
        dlib_upsample: dlib's ``upsample_num_times`` (the reference uses 0).

    Raises:
        InputError: unknown ``kind``.
        OldPhotoError: the backend's package or model files are missing (with a hint).
    """
    if kind not in DETECTOR_KINDS:
        raise InputError(f"face detector: expected one of {DETECTOR_KINDS}, got {kind!r}")
    if kind == "off":
        return None
    if kind == "auto":
        kind = "dlib"
        if insightface_root is not None and _has_module("insightface") and \
                _has_module("onnxruntime"):
            try:
                find_insightface_model(insightface_root, pack=pack)
                kind = "insightface"
            except OldPhotoError:
                pass
        if kind == "dlib" and not _has_module("dlib"):
            raise OldPhotoError(
                "no face detector available: install the face extras with "
                f"`{INSTALL_HINT}` (dlib-bin + face-recognition-models), or install insightface "
                "+ onnxruntime and put det_10g.onnx under models/insightface/models/<pack>/.")
    if kind == "insightface":
        if insightface_root is None:
            raise OldPhotoError("insightface face detector: no model folder given "
                                "(insightface_root, e.g. ComfyUI's models/insightface)")
        from .insightface_backend import InsightFaceDetector
        model = find_insightface_model(insightface_root, pack=pack)
        return InsightFaceDetector(model, det_size=det_size, threshold=threshold,
                                   providers=providers)
    from .dlib_backend import DlibFaceDetector
    return DlibFaceDetector(upsample=dlib_upsample)
