"""Affine resampling that reproduces scikit-image's ``warp`` (constant 0 outside) in torch.

The reference aligns faces with ``skimage.transform.warp`` and warps them back with it, so the
published face models saw crops made exactly this way. The functions here compute the same
numbers in float64 (same coordinate formula, same interpolation kernels, same operation order),
for many faces at once and on any device:

- ``order=0``: nearest neighbour, ``floor(x + 0.5)`` (SciPy ``map_coordinates`` with
  ``grid-constant``, which scikit-image uses for order 0);
- ``order=1``: bilinear with ``floor``/``ceil`` neighbours;
- ``order=3``: scikit-image's bicubic (Catmull-Rom, ``a = -0.5``), rows first then columns.

Samples outside the source read 0. Coordinates are pixel centres: ``x`` = column, ``y`` = row.
"""

from __future__ import annotations

import torch

__all__ = ["grid_from_matrix", "sample"]

_MAX_CHUNK = 1 << 20  # output pixels per face processed at once by the bicubic kernel


def grid_from_matrix(matrix: torch.Tensor, rows: int, cols: int, *, row0: int = 0,
                     col0: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Source coordinates of an output grid under ``matrix`` (output -> source).

    Args:
        matrix: ``[F, 3, 3]`` float64 homogeneous matrices mapping output ``(x, y, 1)`` to
            source coordinates.
        rows, cols: size of the output window.
        row0, col0: absolute position of the window's top-left pixel in the output image.

    Returns:
        ``(x, y)``, each ``[F, rows, cols]`` float64.
    """
    m = matrix.to(torch.float64)
    dev = m.device
    c = torch.arange(col0, col0 + cols, dtype=torch.float64, device=dev).view(1, 1, cols)
    r = torch.arange(row0, row0 + rows, dtype=torch.float64, device=dev).view(1, rows, 1)

    def row(i: int) -> torch.Tensor:
        a, b, t = (m[:, i, j].view(-1, 1, 1) for j in range(3))
        return a * c + b * r + t

    x, y = row(0), row(1)
    last = m[:, 2]
    affine = bool(torch.all(last[:, 0] == 0) and torch.all(last[:, 1] == 0)
                  and torch.all(last[:, 2] == 1))
    if not affine:
        z = row(2)
        x, y = x / z, y / z
    return x, y


def _cubic(t: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
           f3: torch.Tensor) -> torch.Tensor:
    return f1 + 0.5 * t * (f2 - f0 + t * (2.0 * f0 - 5.0 * f1 + 4.0 * f2 - f3
                                          + t * (3.0 * (f1 - f2) + f3 - f0)))


def sample(images: torch.Tensor, index: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
           order: int, transform=None) -> torch.Tensor:
    """Sample ``images[index[f]]`` at ``(x[f], y[f])`` like scikit-image's ``warp``.

    Args:
        images: ``[B, C, H, W]`` source images (any dtype).
        index: ``[F]`` long, which image each face samples.
        x, y: ``[F, R, K]`` float64 source coordinates (column, row).
        order: 0 (nearest), 1 (bilinear) or 3 (bicubic).
        transform: optional callable applied to the gathered source values (float64) before
            interpolating, e.g. a scale; it must map 0 to 0 (the value outside the source).

    Returns:
        ``[F, C, R, K]`` float64.
    """
    b, ch, h, w = images.shape
    # One zero pixel around every image: clamping an index into [-1, H] then reads 0 outside.
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    hp, wp = h + 2, w + 2
    src = padded.reshape(b, ch, hp * wp).transpose(0, 1).reshape(ch, b * hp * wp)
    base = index.to(device=x.device, dtype=torch.long).view(-1, 1, 1) * (hp * wp)

    def rows(r: torch.Tensor) -> torch.Tensor:
        return base + (r.clamp(-1, h) + 1) * wp

    def cols(c: torch.Tensor) -> torch.Tensor:
        return c.clamp(-1, w) + 1

    def tap(row_off: torch.Tensor, col_off: torch.Tensor) -> torch.Tensor:
        v = src[:, row_off + col_off].to(torch.float64)
        return v if transform is None else transform(v)

    if order == 0:
        out = tap(rows(torch.floor(y + 0.5).long()), cols(torch.floor(x + 0.5).long()))
    elif order == 1:
        r0, c0 = torch.floor(y), torch.floor(x)
        dr, dc = y - r0, x - c0
        ra, rb = rows(r0.long()), rows(torch.ceil(y).long())
        ca, cb = cols(c0.long()), cols(torch.ceil(x).long())
        top = (1 - dc) * tap(ra, ca) + dc * tap(ra, cb)
        bottom = (1 - dc) * tap(rb, ca) + dc * tap(rb, cb)
        out = (1 - dr) * top + dr * bottom
    elif order == 3:
        out = _bicubic(tap, rows, cols, x, y)
    else:
        raise ValueError(f"order must be 0, 1 or 3, got {order}")
    return out.permute(1, 0, 2, 3)


def _bicubic(tap, rows, cols, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n_rows = x.shape[1]
    step = max(1, _MAX_CHUNK // max(1, x.shape[0] * x.shape[2]))
    parts = []
    for s in range(0, n_rows, step):
        xs, ys = x[:, s:s + step], y[:, s:s + step]
        fr, fc = torch.floor(ys), torch.floor(xs)
        tr, tc = ys - fr, xs - fc
        r0, c0 = fr.long() - 1, fc.long() - 1
        col_offs = [cols(c0 + k) for k in range(4)]
        per_row = []
        for k in range(4):
            row_off = rows(r0 + k)
            per_row.append(_cubic(tc, *(tap(row_off, co) for co in col_offs)))
        parts.append(_cubic(tr, *per_row))
    return torch.cat(parts, dim=2)
