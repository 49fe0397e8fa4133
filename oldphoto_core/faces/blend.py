"""Blending enhanced faces back into the photo, as ``align_warp_back_multiple_dlib.py`` does.

Per face, in detection order, onto the result of the previous faces:

1. the enhanced crop (8-bit, as the reference's PNG) is histogram-matched per channel to the
   aligned original crop (bilinear, truncated to 8 bits; CDF lookup);
2. it is warped back with the inverse similarity, bicubic (scikit-image's kernel and clipping);
3. a mask of the crop's footprint (nearest neighbour, both ways, so pixels that came from outside
   the photo are excluded) is eroded (9x9 ones, 3 iterations; the photo border does not erode)
   and blurred (``cv2.GaussianBlur`` 25x25, sigma from the size) into the blend weight;
4. ``weight * face + (1 - weight) * photo``, clipped to [0, 1].

Only a window around each face is computed; pixels where every weight is 0 are returned exactly
as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import InputError
from ._image import check_images, luma, quantize, to_rgb
from ._warp import grid_from_matrix, sample
from .align import warp_to_crops
from .types import Face

__all__ = ["BlendWindow", "blend_faces", "blend_window", "match_histograms"]

_ERODE_KERNEL = np.ones((9, 9), np.uint8)
_ERODE_ITERATIONS = 3
_BLUR_SIZE = (25, 25)
_MARGIN = 16  # > erosion radius + blur radius (12), so the window's edge never matters
_CUBIC_REACH = 2.5  # crop pixels beyond the crop that a bicubic sample can still read


def match_histograms(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching of 8-bit images by CDF lookup (the reference's method).

    Each source level ``s`` maps to the smallest reference level ``r`` whose normalised CDF
    reaches the source CDF at ``s``.

    Args:
        source: ``[H, W, C]`` uint8, the image to recolour.
        reference: ``[H', W', C]`` uint8, the colours to match.

    Returns:
        ``[H, W, C]`` uint8.

    Example:
        >>> src = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
        >>> match_histograms(src, src + 10)[..., 0].tolist()
        [[10, 11], [12, 13]]
    """
    if source.dtype != np.uint8 or reference.dtype != np.uint8:
        raise InputError("match_histograms: expected uint8 images")
    out = np.empty_like(source)
    for c in range(source.shape[-1]):
        src, ref = source[..., c], reference[..., c]
        src_cdf = np.cumsum(np.bincount(src.ravel(), minlength=256)).astype(np.float64)
        ref_cdf = np.cumsum(np.bincount(ref.ravel(), minlength=256)).astype(np.float64)
        src_cdf /= src_cdf[-1]
        ref_cdf /= ref_cdf[-1]
        lut = np.minimum(np.searchsorted(ref_cdf, src_cdf, side="left"), 255).astype(np.uint8)
        out[..., c] = lut[src]
    return out


@dataclass(frozen=True)
class BlendWindow:
    """Where one face is blended: ``weight`` ``[h, w]`` float64 in [0, 1] at (``top``, ``left``)."""

    top: int
    left: int
    weight: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.weight.shape
        return slice(self.top, self.top + h), slice(self.left, self.left + w)


def _window(matrix: np.ndarray, size: int, height: int, width: int) -> tuple[int, int, int, int]:
    lo, hi = -_CUBIC_REACH, size - 1 + _CUBIC_REACH
    corners = np.array([[lo, lo, 1], [hi, lo, 1], [lo, hi, 1], [hi, hi, 1]], np.float64)
    pts = corners @ matrix.T
    pts = pts[:, :2] / pts[:, 2:]
    left = max(0, int(np.floor(pts[:, 0].min())) - _MARGIN)
    top = max(0, int(np.floor(pts[:, 1].min())) - _MARGIN)
    right = min(width, int(np.ceil(pts[:, 0].max())) + _MARGIN + 1)
    bottom = min(height, int(np.ceil(pts[:, 1].max())) + _MARGIN + 1)
    return top, left, max(top, bottom), max(left, right)


def _footprint(matrix: np.ndarray, size: int, height: int, width: int, top: int, left: int,
               rows: int, cols: int) -> np.ndarray:
    """The reference's warped-back mask of ones (nearest neighbour both ways), ``[rows, cols]``."""
    m = torch.from_numpy(matrix)[None]
    fx, fy = grid_from_matrix(m, size, size)
    inside = ((torch.floor(fy + 0.5) >= 0) & (torch.floor(fy + 0.5) <= height - 1)
              & (torch.floor(fx + 0.5) >= 0) & (torch.floor(fx + 0.5) <= width - 1))
    fwd = inside.to(torch.float64).view(1, 1, size, size)
    inv = torch.from_numpy(np.linalg.inv(matrix))[None]
    bx, by = grid_from_matrix(inv, rows, cols, row0=top, col0=left)
    back = sample(fwd, torch.zeros(1, dtype=torch.long), bx, by, order=0)
    return back[0, 0].numpy()


def blend_window(face: Face, height: int, width: int) -> BlendWindow:
    """The feathered blend weight of an aligned face in an image of ``height x width``.

    Raises:
        InputError: the face has no ``matrix``/``face_size`` (not aligned).
    """
    if face.matrix is None or face.face_size is None:
        raise InputError("blend: the face has not been aligned (matrix is None)")
    top, left, bottom, right = _window(face.matrix, face.face_size, height, width)
    if bottom <= top or right <= left:  # the crop lies entirely outside the image
        return BlendWindow(top, left, np.zeros((max(0, bottom - top), max(0, right - left))))
    mask = _footprint(face.matrix, face.face_size, height, width, top, left, bottom - top,
                      right - left)
    mask = cv2.erode(mask * 255.0, _ERODE_KERNEL, iterations=_ERODE_ITERATIONS)
    mask = cv2.GaussianBlur(mask, _BLUR_SIZE, 0) / 255.0
    return BlendWindow(top, left, mask)


def _clip_like_skimage(warped: torch.Tensor, crop: np.ndarray, whole_image: bool) -> torch.Tensor:
    """scikit-image ``warp``'s output clip: the input range, widened to cval 0 if it shows up."""
    lo, hi = float(crop.min()), float(crop.max())
    out_lo, out_hi = float(warped.min()), float(warped.max())
    if not whole_image:  # pixels outside the window are 0 in the reference's full-size output
        out_lo, out_hi = min(out_lo, 0.0), max(out_hi, 0.0)
    if not lo <= 0.0 <= hi and out_lo <= 0.0 <= out_hi:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return warped.clamp(lo, hi)


def _warp_back(face: Face, matched: np.ndarray, win: BlendWindow, device: torch.device,
               whole_image: bool) -> torch.Tensor:
    rows, cols = win.weight.shape
    inv = torch.from_numpy(np.linalg.inv(face.matrix))[None].to(device)
    x, y = grid_from_matrix(inv, rows, cols, row0=win.top, col0=win.left)
    src = torch.from_numpy(matched).permute(2, 0, 1)[None].to(device)
    warped = sample(src, torch.zeros(1, dtype=torch.long, device=device), x, y, order=3)[0]
    return _clip_like_skimage(warped, matched, whole_image)


def blend_faces(images: torch.Tensor, faces: list[list[Face]]) -> torch.Tensor:
    """Blend the enhanced faces of every batch item back into its image.

    Args:
        images: ``[B, C, H, W]`` float in [0, 1], C in {1, 3, 4}: the image the faces were
            aligned on. Gray stays gray (ITU-R 601 luma of the blended colour, only where a face
            is blended); alpha passes through.
        faces: per item, faces with ``matrix`` and ``enhanced`` (see
            :func:`~oldphoto_core.faces.enhance_faces`), blended in list order.

    Returns:
        A new ``[B, C, H, W]`` tensor (input dtype/device); pixels no face touches are
        bit-identical to the input. Items without faces are unchanged.

    Raises:
        InputError: bad images, one list per item missing, or a face not enhanced.
    """
    check_images(images)
    if len(faces) != images.shape[0]:
        raise InputError(f"faces: expected one list per batch item ({images.shape[0]}), got "
                         f"{len(faces)}")
    out = images.clone()
    _, c, h, w = images.shape
    for i, item in enumerate(faces):
        if not item:
            continue
        if any(f.enhanced is None or f.matrix is None for f in item):
            raise InputError("blend_faces: every face must be aligned and enhanced first")
        bad = [tuple(f.enhanced.shape) for f in item
               if tuple(f.enhanced.shape) != (3, f.face_size, f.face_size)]
        if bad:
            raise InputError(f"blend_faces: enhanced crops must be [3, S, S] with S the face's "
                             f"face_size, got {bad}")
        q = quantize(to_rgb(images[i:i + 1]))
        for face in item:
            _blend_one(out, i, q, face, h, w, c)
    return out


def _blend_one(out: torch.Tensor, i: int, q: torch.Tensor, face: Face, h: int, w: int,
               c: int) -> None:
    size = face.face_size
    mats = torch.from_numpy(face.matrix)[None]
    orig = warp_to_crops(q, torch.zeros(1, dtype=torch.long, device=q.device), mats, size,
                         scale_01=False)[0]
    reference = orig.floor().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    restored = quantize(face.enhanced.to(torch.float32)).permute(1, 2, 0).cpu().numpy()
    matched = match_histograms(np.ascontiguousarray(restored), np.ascontiguousarray(reference))
    win = blend_window(face, h, w)
    if not np.any(win.weight > 0):
        return
    rows, cols = win.slices
    whole = win.weight.shape == (h, w)
    warped = _warp_back(face, matched, win, out.device, whole)
    weight = torch.from_numpy(win.weight).to(out.device)
    base = to_rgb(out[i:i + 1, :, rows, cols])[0].to(torch.float64) * 255.0
    mixed = (warped * weight + (1 - weight) * base) / 255.0
    mixed = mixed.clamp_(0.0, 1.0)
    if c == 1:
        gray = luma(mixed)
        mixed = torch.where(weight > 0, gray, base[:1] / 255.0)
        out[i, :1, rows, cols] = mixed.to(out.dtype)
    else:
        out[i, :3, rows, cols] = mixed.to(out.dtype)
