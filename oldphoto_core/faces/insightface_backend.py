"""insightface backend: SCRFD (``det_10g.onnx``) through the pure-Python insightface wheel.

Only the SCRFD class of ``insightface.model_zoo`` is used, built from a file we located
ourselves with our own onnxruntime session: ``FaceAnalysis`` / ``get_model`` are never called,
so nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, OldPhotoError
from .types import Face

__all__ = ["InsightFaceDetector"]

_HINT = 'pip install "oldphoto[faces]"  (or: pip install insightface onnxruntime)'


def _import_scrfd():
    try:
        import onnxruntime
        from insightface.model_zoo.scrfd import SCRFD
    except ImportError as e:
        raise OldPhotoError(f"the insightface face detector needs insightface and "
                            f"onnxruntime: {_HINT} ({e})") from e
    return onnxruntime, SCRFD


class InsightFaceDetector:
    """SCRFD face detector with five landmarks.

    Args:
        model_file: the SCRFD ``.onnx`` (e.g. ``models/insightface/models/buffalo_l/det_10g.onnx``).
        det_size: network input ``(width, height)``; the image is resized into it keeping its
            aspect ratio (insightface's letterbox).
        threshold: minimum score.
        nms_threshold: IoU above which lower-scored boxes are suppressed.
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).

    Raises:
        OldPhotoError: missing packages or file, or a model without landmark outputs.
    """

    name = "insightface"

    def __init__(self, model_file: str | os.PathLike[str], *, det_size: Sequence[int] = (640, 640),
                 threshold: float = 0.5, nms_threshold: float = 0.4,
                 providers: Sequence[str] | None = None) -> None:
        path = Path(model_file)
        if not path.is_file():
            raise OldPhotoError(f"insightface face detector: model file {path} not found "
                                f"(folder {path.parent}); oldphoto never downloads it")
        if len(det_size) != 2 or min(det_size) < 32:
            raise InputError(f"det_size must be (width, height) >= 32, got {det_size!r}")
        ort, scrfd_cls = _import_scrfd()
        provs = list(providers) if providers else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(path), providers=provs)
            self._scrfd = scrfd_cls(model_file=str(path), session=session)
        except Exception as e:  # onnxruntime/protobuf raise many types for a bad file
            raise OldPhotoError(f"insightface face detector: cannot load {path}: {e}") from e
        if not getattr(self._scrfd, "use_kps", False):
            raise OldPhotoError(f"{path}: this SCRFD model has no landmark outputs; use a "
                                "'*kps' model such as det_10g.onnx")
        self.det_size = (int(det_size[0]), int(det_size[1]))
        self.threshold = float(threshold)
        on_cpu = provs == ["CPUExecutionProvider"]
        self._scrfd.prepare(-1 if on_cpu else 0, input_size=self.det_size,
                            det_thresh=self.threshold, nms_thresh=float(nms_threshold))
        self._scrfd.det_thresh = self.threshold
        self.model_file = path

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces of a ``[H, W, 3]`` uint8 RGB image, highest score first."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"insightface detector: expected [H, W, 3] uint8, got "
                             f"{image.dtype} {list(image.shape)}")
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # insightface expects OpenCV's BGR
        dets, kpss = self._scrfd.detect(bgr, input_size=self.det_size, max_num=0)
        if kpss is None:
            return []
        return [Face(box=tuple(d[:4]), score=float(d[4]), landmarks=k.astype(np.float64))
                for d, k in zip(dets, kpss, strict=True)]

    def __repr__(self) -> str:
        return (f"InsightFaceDetector({self.model_file.name}, det_size={self.det_size}, "
                f"threshold={self.threshold})")
