"""``OLDPHOTO_FACES``: the faces of a batch, with what any consumer needs to align them itself.

'Detect Faces' cuts no crops. It records, per batch item, the detections (box, score, the 5
landmarks, in pixels of the photo) together with the photos they were found in. Whoever consumes
the faces aligns them at *its own* size: 'Enhance Faces' at its face model's size (256 or 512),
'Faces To Images' at its ``size`` widget. The aligned records (``Face.matrix``, the similarity
from crop to photo, and ``Face.face_size``) travel on to 'Blend Faces', which warps each crop back
with the inverse of exactly the alignment that produced it. No two nodes can therefore disagree on
the face size: there is no second setting to get wrong.

Why the faces keep a reference to their photos rather than asking for an IMAGE input on every
consumer: a consumer then cannot be wired to a different image from the one the landmarks belong
to, and the graph keeps its shape (workflows saved before this change still connect). The
reference is the upstream node's own output tensor, which ComfyUI keeps in its cache anyway: no
copy is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, align_faces

from .convert import image_to_nchw

__all__ = ["FaceSet", "check_faces"]


@dataclass(frozen=True, eq=False)
class FaceSet:
    """An ``OLDPHOTO_FACES`` value. Immutable: every node returns a new one.

    Attributes:
        faces: per batch item, its :class:`~oldphoto_core.faces.Face` records in detection order
            (``image_index`` set). Straight from 'Detect Faces' they are detections only (box,
            score, landmarks); once aligned they also hold ``matrix``, ``face_size`` and the
            ``aligned`` crop, and once enhanced or restored the ``enhanced`` crop.
        source: the ComfyUI ``IMAGE`` ``[B, H, W, C]`` the faces were detected in (the very
            tensor, not a copy); the landmarks are in its pixels and every alignment samples it.
        face_size: side of the aligned crops when the faces are aligned, ``None`` for
            detections only.
    """

    faces: tuple[tuple[Face, ...], ...]
    source: torch.Tensor
    face_size: int | None = None

    def __post_init__(self) -> None:
        faces = tuple(tuple(item) for item in self.faces)
        object.__setattr__(self, "faces", faces)
        if len(faces) != self.source.shape[0]:
            raise InputError(f"faces: expected one list per image ({self.source.shape[0]}), got "
                             f"{len(faces)}")
        if self.face_size is not None and any(
                f.face_size != self.face_size or f.aligned is None for f in self.flat):
            raise InputError(f"faces: every face must be aligned at {self.face_size} px")

    @classmethod
    def detected(cls, source: torch.Tensor, faces: list[list[Face]]) -> FaceSet:
        """Detections of ``source`` (alignment and crops, if any, are dropped)."""
        plain = [[f.with_(image_index=i, matrix=None, face_size=None, aligned=None,
                          enhanced=None) for f in item] for i, item in enumerate(faces)]
        return cls(tuple(tuple(item) for item in plain), source)

    @property
    def batch(self) -> int:
        return len(self.faces)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the photos the faces were found in."""
        return int(self.source.shape[1]), int(self.source.shape[2])

    @property
    def flat(self) -> list[Face]:
        """Every face of the batch: item by item, in detection order (the crop order)."""
        return [f for item in self.faces for f in item]

    @property
    def count(self) -> int:
        return sum(len(item) for item in self.faces)

    @property
    def enhanced(self) -> bool:
        """Whether every face carries an enhanced (or restored) crop."""
        return self.face_size is not None and all(f.enhanced is not None for f in self.flat)

    def nested(self) -> list[list[Face]]:
        """The faces as the core's ``list[list[Face]]``."""
        return [list(item) for item in self.faces]

    def aligned_at(self, face_size: int) -> FaceSet:
        """The faces aligned at ``face_size`` from :attr:`source` (self when they already are).

        A new alignment drops any enhanced crop. Faces whose landmarks admit no similarity
        (degenerate) are dropped, as in :func:`oldphoto_core.faces.align_faces`.
        """
        if self.face_size == face_size:
            return self
        aligned = align_faces(image_to_nchw(self.source), self.nested(), face_size=face_size)
        return FaceSet(tuple(tuple(item) for item in aligned), self.source, face_size)

    def with_faces(self, faces: list[list[Face]]) -> FaceSet:
        """The same photos and alignment with new records (e.g. enhanced ones)."""
        return FaceSet(tuple(tuple(item) for item in faces), self.source, self.face_size)

    def __repr__(self) -> str:
        h, w = self.size
        aligned = f", aligned at {self.face_size} px" if self.face_size else ""
        done = ", enhanced" if self.count and self.enhanced else ""
        return f"FaceSet({self.count} face(s) in {self.batch} image(s) of {w}x{h}{aligned}{done})"


def check_faces(faces: object, *, node: str, batch: int | None = None,
                size: tuple[int, int] | None = None) -> FaceSet:
    """Check an ``OLDPHOTO_FACES`` input, and that it belongs to an image batch of ``batch``
    items of ``size`` ``(height, width)`` when given."""
    if not isinstance(faces, FaceSet):
        raise InputError(f"{node}: expected OLDPHOTO_FACES from 'Detect Faces', got "
                         f"{type(faces).__name__}")
    if batch is not None and faces.batch != batch:
        raise InputError(f"{node}: the faces were found in a batch of {faces.batch} images but "
                         f"the image batch has {batch}; use the same images (or their "
                         "restored version) that went into 'Detect Faces'")
    if size is not None and faces.size != tuple(size):
        (fh, fw), (h, w) = faces.size, size
        raise InputError(f"{node}: the faces were found in {fw}x{fh} images but the image is "
                         f"{w}x{h}; blend into the same images (or a restored version of the "
                         "same size) that went into 'Detect Faces'")
    return faces
