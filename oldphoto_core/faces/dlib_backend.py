"""dlib backend: HOG frontal face detector + 68-point shape predictor, as the reference.

Uses the prebuilt ``dlib-bin`` wheel (no compiler) and the predictor file shipped in the
``face-recognition-models`` package, located with ``importlib.util.find_spec`` (importing that
package fails on current setuptools because it imports ``pkg_resources``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import InputError, OldPhotoError
from .types import Face

__all__ = ["DlibFaceDetector", "five_points_from_68", "shape_predictor_path"]

_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
_HINT = 'pip install "oldphoto[faces]"  (or: pip install dlib-bin face-recognition-models)'


def _import_dlib():
    try:
        import dlib
    except ImportError as e:
        raise OldPhotoError(f"the dlib face detector needs the dlib package: {_HINT}") from e
    return dlib


def shape_predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` in ``face-recognition-models``.

    Raises:
        OldPhotoError: the package or the file is missing.
    """
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise OldPhotoError(f"the dlib face detector needs the 68-point landmark model of the "
                            f"face-recognition-models package: {_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / _PREDICTOR_FILE
    if not path.is_file():
        raise OldPhotoError(f"{path} is missing; reinstall face-recognition-models ({_HINT})")
    return path


@functools.lru_cache(maxsize=2)
def _load(path: str):
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(path)


def five_points_from_68(points: np.ndarray) -> np.ndarray:
    """The reference's five points from the 68 (``search`` in ``detect_all_dlib.py``).

    Eye centres are the truncated means of the eye corners (``int((p36 + p39) / 2)``,
    ``int((p42 + p45) / 2)``), then the nose tip p30 and the mouth corners p48, p54.

    Args:
        points: ``[68, 2]`` integer ``(x, y)``.

    Returns:
        ``[5, 2]`` float64.

    Example:
        >>> p = np.zeros((68, 2), int); p[36], p[39] = (10, 20), (15, 21)
        >>> five_points_from_68(p)[0].tolist()
        [12.0, 20.0]
    """
    p = np.asarray(points)
    eyes = [np.trunc((p[a] + p[b]) / 2) for a, b in ((36, 39), (42, 45))]
    return np.stack([*eyes, p[30], p[48], p[54]]).astype(np.float64)


class DlibFaceDetector:
    """dlib HOG detector + 68-point landmarks reduced to five points.

    Args:
        upsample: ``upsample_num_times`` of the HOG detector; 0 as the reference's call.
        predictor_path: the 68-point model (default: from ``face-recognition-models``).

    Raises:
        OldPhotoError: dlib or the landmark model is missing.
    """

    name = "dlib"

    def __init__(self, *, upsample: int = 0, predictor_path: str | Path | None = None) -> None:
        if upsample < 0:
            raise InputError(f"dlib upsample must be >= 0, got {upsample}")
        path = Path(predictor_path) if predictor_path else shape_predictor_path()
        self.upsample = int(upsample)
        self._detector, self._predictor = _load(str(path))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces of a ``[H, W, 3]`` uint8 RGB image, in dlib's order (as the reference)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"dlib detector: expected [H, W, 3] uint8, got {image.dtype} "
                             f"{list(image.shape)}")
        rects, scores, _ = self._detector.run(image, self.upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            shape = self._predictor(image, rect)
            pts = np.array([(shape.part(k).x, shape.part(k).y) for k in range(68)])
            faces.append(Face(box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
                              score=score, landmarks=five_points_from_68(pts)))
        return faces

    def __repr__(self) -> str:
        return f"DlibFaceDetector(upsample={self.upsample})"
