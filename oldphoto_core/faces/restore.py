"""The face half of the pipeline in one call: detect, align, enhance, blend (paper §3.4)."""

from __future__ import annotations

import torch

from ..errors import InputError
from ._image import check_images
from .align import align_faces
from .blend import blend_faces
from .detect import FaceDetector, detect_faces
from .enhance import CropRestorer, FaceModel, Progress, enhance_faces
from .types import Face

__all__ = ["restore_faces"]


def restore_faces(images: torch.Tensor, detector: FaceDetector | None,
                  enhancer: FaceModel | CropRestorer, *,
                  face_size: int = 256, faces: list[list[Face]] | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  memory_budget_mb: float | None = None,
                  progress: Progress | None = None) -> tuple[torch.Tensor, list[list[Face]]]:
    """Enhance every face of a batch of (stage-1 restored) photos.

    The reference detects faces twice on the same stage-1 image (stage 2 to align, stage 4 to
    blend) with the same detector, so both detections are identical; we detect once and blend
    with the same faces.

    Args:
        images: ``[B, C, H, W]`` float in [0, 1], C in {1, 3, 4}.
        detector: a :class:`~oldphoto_core.faces.FaceDetector`, or ``None`` when ``faces`` is
            given (or to do nothing).
        enhancer: the face model (``ModelDescriptor`` of kind ``face_enhancer`` or
            ``nn.Module``), trained for ``face_size`` (256: ``Setting_9_epoch_100``, 512:
            ``FaceSR_512``); or any callable on aligned crops (``[F, 3, S, S]`` in [0, 1] ->
            ``[F, 3, S', S']``: CodeFormer, GFPGAN ... wrapped by the caller), whose output is
            resized to ``face_size`` and blended the same way.
        face_size: aligned crop side (256 or 512).
        faces: detections to use instead of running ``detector`` (one list per item).
        device, dtype: where the generator runs (default: the model's).
        memory_budget_mb: generator chunking budget (see
            :func:`~oldphoto_core.faces.faces_per_chunk`).
        progress: ``progress(done, total)`` over the faces of the batch.

    Returns:
        ``(restored, faces)``: a new ``[B, C, H, W]`` tensor (input dtype/device; items without
        faces bit-identical to the input) and, per item, the faces with matrix, aligned and
        enhanced crops.

    Raises:
        InputError: bad images, or neither a detector nor faces.
    """
    check_images(images)
    if faces is None:
        if detector is None:
            return images.clone(), [[] for _ in range(images.shape[0])]
        faces = detect_faces(images, detector)
    elif len(faces) != images.shape[0]:
        raise InputError(f"faces: expected one list per batch item ({images.shape[0]}), got "
                         f"{len(faces)}")
    if not any(faces):
        return images.clone(), [[] for _ in range(images.shape[0])]
    aligned = align_faces(images, faces, face_size=face_size)
    enhanced = enhance_faces(aligned, enhancer, device=device, dtype=dtype,
                             memory_budget_mb=memory_budget_mb, progress=progress)
    return blend_faces(images, enhanced), enhanced
