"""Face alignment: similarity transform onto the reference's 5-point template (paper §3.4).

The reference (``Face_Detection/detect_all_dlib.py``) maps the five landmarks onto a template
scaled by 1.3 about the crop centre and samples the crop bilinearly (scikit-image ``warp``,
0 outside the photo), then stores it as 8-bit (``img_as_ubyte``: round half to even). We do the
same for all faces of a batch at once; the matrix is kept on the :class:`Face` for blending.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ._image import check_images, quantize, to_rgb
from ._warp import grid_from_matrix, sample
from .types import Face

__all__ = ["TEMPLATE_SCALE", "align_faces", "estimate_similarity", "face_template",
           "warp_to_crops"]

#: Scale of the template about the crop centre used by the reference (``target_face_scale``).
TEMPLATE_SCALE = 1.3
# Five points (x, y) on a 256 px canvas: eye centres, nose tip, mouth corners.
_TEMPLATE_256 = (196.0, 226.0, 316.0, 226.0, 256.0, 286.0, 220.0, 360.4, 292.0, 360.4)


def face_template(face_size: int = 256, scale: float = TEMPLATE_SCALE) -> np.ndarray:
    """The 5-point template of an aligned crop.

    Computed in float32 exactly as the reference: ``((t / 256 - 1) * scale + 1) / 2 * size``.

    Args:
        face_size: side of the aligned crop (256 or 512 for the published models).
        scale: template scale about the centre.

    Returns:
        ``[5, 2]`` float32 ``(x, y)``.

    Example:
        >>> face_template(256)[0].tolist()
        [89.0, 108.5]
    """
    std = np.asarray(_TEMPLATE_256, np.float32) / 256.0 - 1.0
    pts = (std * np.float32(scale) + 1) / 2 * np.float32(face_size)
    return pts.astype(np.float32).reshape(5, 2)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    Closed form of Umeyama's estimate in 2-D, which is what scikit-image's
    ``SimilarityTransform.estimate(src, dst)`` computes: with centred points ``p`` (src) and
    ``q`` (dst), ``A = q^T p / n`` and ``var = sum(var(p))``, the matrix is
    ``[[a, -b], [b, a]]`` with ``a = (A00 + A11) / var``, ``b = (A10 - A01) / var``. Like
    scikit-image, the centring and variance of ``src`` use its own float dtype (the reference's
    template is float32), the rest float64.

    Args:
        src, dst: ``[N, 2]`` corresponding ``(x, y)`` points, N >= 2.

    Returns:
        ``[3, 3]`` float64 homogeneous matrix; all NaN when ``src`` is degenerate.

    Example:
        >>> src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> (estimate_similarity(src, 2 * src + 5)[:2].round(6) + 0.0).tolist()
        [[2.0, 0.0, 5.0], [0.0, 2.0, 5.0]]
    """
    s = np.asarray(src)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    d = np.asarray(dst, np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise InputError(f"expected two [N, 2] point sets, got {list(s.shape)} and "
                         f"{list(d.shape)}")
    s_mean, d_mean = s.mean(axis=0), d.mean(axis=0)
    p, q = s - s_mean, d - d_mean
    var = p.var(axis=0).sum()
    if not np.isfinite(var) or var <= 0:
        return np.full((3, 3), np.nan)
    cov = q.T @ p.astype(np.float64) / s.shape[0]
    inv_var = float(1.0 / var)
    a = (cov[0, 0] + cov[1, 1]) * inv_var
    b = (cov[1, 0] - cov[0, 1]) * inv_var
    rot = np.array([[a, -b], [b, a]])
    out = np.eye(3)
    out[:2, :2] = rot
    out[:2, 2] = d_mean - rot @ s_mean.astype(np.float64)
    return out


def warp_to_crops(rgb_u8: torch.Tensor, index: torch.Tensor, matrices: torch.Tensor,
                  face_size: int, *, scale_01: bool) -> torch.Tensor:
    """Bilinear crops of 8-bit images, as scikit-image ``warp`` (float64, 0 outside).

    Args:
        rgb_u8: ``[B, 3, H, W]`` uint8 images.
        index: ``[F]`` image of each face.
        matrices: ``[F, 3, 3]`` crop -> image.
        face_size: crop side S.
        scale_01: sample ``u * (1/255)`` (``img_as_float``) instead of ``u`` (``preserve_range``).

    Returns:
        ``[F, 3, S, S]`` float64.
    """
    x, y = grid_from_matrix(matrices.to(rgb_u8.device), face_size, face_size)
    tf = (lambda v: v * (1.0 / 255)) if scale_01 else None
    return sample(rgb_u8, index, x, y, order=1, transform=tf)


def _face_matrix(face: Face, template: np.ndarray) -> np.ndarray | None:
    m = estimate_similarity(template, face.landmarks)
    return m if np.all(np.isfinite(m)) and abs(np.linalg.det(m[:2, :2])) > 1e-12 else None


def align_faces(images: torch.Tensor, faces: list[list[Face]], *,
                face_size: int = 256) -> list[list[Face]]:
    """Aligned crops of every face of a batch, computed together.

    Args:
        images: ``[B, C, H, W]`` float in [0, 1], C in {1, 3, 4} (the image faces were detected
            on; quantised to 8 bits first, as the reference reads PNGs).
        faces: per batch item, its faces (``landmarks`` used).
        face_size: crop side, a multiple of 32 (256 or 512 for the published models).

    Returns:
        Per item, new :class:`Face` records with ``matrix``, ``face_size`` and ``aligned``
        (``[3, S, S]`` float32, 8-bit levels / 255, on the images' device). Faces whose
        landmarks are degenerate (no similarity) are dropped.

    Raises:
        InputError: bad images, ``faces`` not one list per item, or a bad ``face_size``.
    """
    check_images(images)
    _check_face_size(face_size)
    if len(faces) != images.shape[0]:
        raise InputError(f"faces: expected one list per batch item ({images.shape[0]}), got "
                         f"{len(faces)}")
    template = face_template(face_size)
    kept: list[tuple[int, Face, np.ndarray]] = []
    for i, item in enumerate(faces):
        for f in item:
            m = _face_matrix(f, template)
            if m is not None:
                kept.append((i, f, m))
    out: list[list[Face]] = [[] for _ in faces]
    if not kept:
        return out
    q = quantize(to_rgb(images))
    index = torch.tensor([i for i, _, _ in kept], device=images.device)
    mats = torch.from_numpy(np.stack([m for _, _, m in kept]))
    crops01 = warp_to_crops(q, index, mats, face_size, scale_01=True)
    # img_as_ubyte: rint(255 v) (half to even), then ToTensor: k / 255 in float32.
    levels = torch.round(crops01 * 255).clamp_(0, 255).to(torch.float32)
    aligned = levels / 255
    for k, (i, f, m) in enumerate(kept):
        out[i].append(f.with_(image_index=i, matrix=m, face_size=face_size,
                              aligned=aligned[k], enhanced=None))
    return out


def _check_face_size(face_size: int) -> None:
    if not isinstance(face_size, int) or face_size < 64 or face_size % 32:
        raise InputError(f"face_size must be a multiple of 32 (256 or 512 for the published "
                         f"models), got {face_size!r}")
