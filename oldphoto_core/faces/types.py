"""The ``Face`` record passed between detection, alignment, enhancement and blending."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Face", "FACE_POINTS"]

#: Order of the five landmarks (image left/right, as seen by the viewer).
FACE_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face. Each stage returns new records (``with_``); none is modified in place.

    Attributes:
        box: ``(left, top, right, bottom)`` in image pixels (float).
        score: detector confidence (dlib: SVM margin; insightface: probability).
        landmarks: ``[5, 2]`` float64 ``(x, y)`` in image pixels, in :data:`FACE_POINTS` order.
        image_index: which item of the batch the face belongs to.
        matrix: ``[3, 3]`` float64 similarity mapping aligned-crop pixel ``(x, y, 1)`` to image
            pixels (scikit-image's ``SimilarityTransform.estimate(template, landmarks)``); its
            inverse maps the image onto the crop. Set by alignment.
        face_size: side of the aligned crop in pixels (256 or 512). Set by alignment.
        aligned: ``[3, S, S]`` float32 in [0, 1], the aligned degraded face (8-bit levels, as
            the reference's PNG). Set by alignment.
        enhanced: ``[3, S, S]`` float32 in [0, 1], the generator's output. Set by enhancement.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    image_index: int = 0
    matrix: np.ndarray | None = None
    face_size: int | None = None
    aligned: torch.Tensor | None = None
    enhanced: torch.Tensor | None = None

    def __post_init__(self) -> None:
        lm = np.asarray(self.landmarks, dtype=np.float64)
        if lm.shape != (5, 2):
            raise ValueError(f"landmarks must be [5, 2] (x, y), got {list(lm.shape)}")
        object.__setattr__(self, "landmarks", lm)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))

    def with_(self, **changes) -> Face:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    @property
    def inverse_matrix(self) -> np.ndarray:
        """``[3, 3]`` image -> aligned crop (``np.linalg.inv(matrix)``, as ``T.inverse``)."""
        if self.matrix is None:
            raise ValueError("this face has not been aligned yet (matrix is None)")
        return np.linalg.inv(self.matrix)

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        extra = "".join(f", {n}" for n in ("aligned", "enhanced") if getattr(self, n) is not None)
        return (f"Face(image {self.image_index}, box=({box}), score={self.score:.3f}"
                f"{', size ' + str(self.face_size) if self.face_size else ''}{extra})")
