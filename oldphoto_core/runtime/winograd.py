"""3x3 convolution by Winograd's minimal filtering F(4x4, 3x3), in float32, with PyTorch ops.

Why: on CPUs the restoration's time goes into 512-channel 3x3 convolutions (about twenty of
them in the scratch mapping), which oneDNN computes directly, at nine multiplications per
output per channel pair. F(4x4, 3x3) computes each 4x4 output tile from a 6x6 input tile with
36 element-wise products instead of 144, i.e. 2.25 multiplications per output: the same
convolution in about 4x fewer multiply-adds, spent in one batched matrix product (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", CVPR 2016).

It is an exact algorithm, not an approximation: in real arithmetic it equals the direct
convolution. In float32 its rounding differs. Its worst-case error bound is the direct one's
times the transforms' error growth, about 97 for the interpolation points below (256 for
Lavin & Gray's): ``tests/numeric_bounds.py`` derives the element-wise bound that the tests hold
it to on any CPU. Measured errors are far below that worst case and stay inside every parity
tolerance of the kit; how close they come to the direct convolution's depends on the CPU (on
AVX-512, where oneDNN accumulates more accurately, the ratio is larger than on AVX2).
``precision="direct"`` turns it off where bit-for-bit agreement with PyTorch's direct
convolution matters.

Memory stays bounded on large maps: tile rows are processed in chunks of a fixed number of tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

import torch

__all__ = ["winograd_conv3x3", "transform_weight", "workspace"]

_POOL: ContextVar[dict[str, torch.Tensor] | None] = ContextVar("oldphoto_winograd_pool",
                                                                default=None)

#: Tiles per chunk: enough rows for the batched product to run near the CPU's peak, few enough
#: that one chunk's transformed tiles (36 x tiles x channels) stay in the last-level cache.
_TILES_PER_CHUNK = 320

# F(4, 3) by Toom-Cook with interpolation points 0, 1, -1, 2, -1/2 and infinity. Lavin & Gray
# use 0, +-1, +-2; Barabasz et al. ("Error analysis and improving the accuracy of Winograd
# convolution for deep neural networks", ACM TOMS 2020) show that mixing 2 and -1/2 keeps the
# transforms' entries smaller: error growth 97 against 256 (tests/numeric_bounds.py,
# winograd_growth).
# All entries are exact binary fractions except G's thirds and fifteenths, see _transforms.
_BT = (
    (1, 3 / 2, -2, -3 / 2, 1, 0),
    (0, -1, -5 / 2, -1 / 2, 1, 0),
    (0, 1, 1 / 2, -5 / 2, 1, 0),
    (0, -1 / 2, -1, 1 / 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 1, 3 / 2, -2, -3 / 2, 1),
)
_G = (
    (1, 0, 0),
    (-1 / 3, -1 / 3, -1 / 3),
    (1 / 3, -1 / 3, 1 / 3),
    (1 / 15, 2 / 15, 4 / 15),
    (-16 / 15, 8 / 15, -4 / 15),
    (0, 0, 1),
)
_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -1 / 2, 0),
    (0, 1, 1, 4, 1 / 4, 0),
    (0, 1, -1, 8, -1 / 8, 1),
)


@lru_cache(maxsize=8)
def _transforms(device: torch.device, dtype: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2-D transforms as Kronecker products: input [36,36], weight [36,9], output [16,36].

    A 2-D transform ``M X M^T`` of a flattened tile is ``kron(M, M) x``. The products are
    formed in float64 and rounded once, so ``kron(G, G)``'s ninths and 225ths carry no extra
    rounding.
    """
    mats = [torch.kron(m, m).to(device=device, dtype=dtype) for m in
            (torch.tensor(t, dtype=torch.float64) for t in (_BT, _G, _AT))]
    return mats[0], mats[1], mats[2]


@contextmanager
def workspace() -> Iterator[None]:
    """Within the block, Winograd convolutions reuse their scratch buffers.

    A fresh large CPU allocation is paid for again in page faults on first touch (measured:
    about a third of a millisecond per MB, 70 ms per 512-channel layer at 124x156, a quarter of
    its time). Inside this block the padded input, the transformed weights and the chunk buffers
    are kept and grown as needed, and released when the block ends; outputs are always fresh.
    :func:`oldphoto_core.runtime.numerics.network_math` opens one around every network call.
    """
    token = _POOL.set({})
    try:
        yield
    finally:
        _POOL.reset(token)


def _buffer(name: str, numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat scratch tensor of ``numel`` elements (contents undefined), pooled if possible."""
    pool = _POOL.get()
    if pool is None:
        return like.new_empty(numel)
    buf = pool.get(name)
    if buf is None or buf.numel() < numel or buf.device != like.device \
            or buf.dtype != like.dtype:
        pool.pop(name, None)  # free the old one before allocating the larger
        buf = pool[name] = like.new_empty(numel)
    return buf[:numel]


def transform_weight(weight: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[Cout, Cin, 3, 3]`` -> ``[36, Cout, Cin]``: ``G g G^T`` for every channel pair.

    One matrix product straight into the layout the batched product reads, so no copy of the
    4x larger transformed weights is made. ``out``: a flat buffer to write into.
    """
    cout, cin = weight.shape[:2]
    _, kg, _ = _transforms(weight.device, weight.dtype)
    if out is None:
        out = weight.new_empty(36 * cout * cin)
    w = weight.detach().reshape(cout * cin, 9).t()
    return torch.mm(kg, w, out=out.view(36, cout * cin)).view(36, cout, cin)


#: Padding modes of :func:`winograd_conv3x3`, as ``F.pad`` names them (``"zeros"`` is the
#: ``nn.Conv2d`` spelling of ``"constant"``).
PADDING_MODES = ("zeros", "reflect")


def _padded_channels_last(x: torch.Tensor, padding: int, mode: str, nh: int, nw: int
                          ) -> torch.Tensor:
    """``[B, 4nh+2, 4nw+2, C]``: ``x`` channels-last, padded by ``padding`` on every side (zeros
    or reflection) plus zeros that complete the last tile row and column.

    Padding here, while the input is copied into the channels-last work buffer anyway, saves
    the separate padded copy of the whole map that ``nn.ReflectionPad2d`` would allocate.
    """
    b, c, h, w = x.shape
    p = padding
    hp, wp = 4 * nh + 2, 4 * nw + 2
    xl = _buffer("input", b * hp * wp * c, x).view(b, hp, wp, c)
    xl[:, p:p + h, p:p + w] = x.permute(0, 2, 3, 1)
    if mode == "reflect" and p:
        # columns first (interior rows), then whole rows, so the corners reflect both ways
        for k in range(1, p + 1):
            xl[:, p:p + h, p - k] = xl[:, p:p + h, p + k]
            xl[:, p:p + h, p + w - 1 + k] = xl[:, p:p + h, p + w - 1 - k]
        for k in range(1, p + 1):
            xl[:, p - k] = xl[:, p + k]
            xl[:, p + h - 1 + k] = xl[:, p + h - 1 - k]
        xl[:, p + h + p:].zero_()
        xl[:, :p + h + p, p + w + p:].zero_()
    else:
        xl[:, :p].zero_()
        xl[:, p + h:].zero_()
        xl[:, p:p + h, :p].zero_()
        xl[:, p:p + h, p + w:].zero_()
    return xl


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     padding: int = 0, padding_mode: str = "zeros", *,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride=1, padding=padding)`` for a 3x3 kernel, by F(4x4, 3x3).

    Args:
        x: ``[B, Cin, H, W]`` float32.
        weight: ``[Cout, Cin, 3, 3]``.
        bias: ``[Cout]`` or None.
        padding: padding on every side (as ``nn.Conv2d``'s ``padding``).
        padding_mode: ``"zeros"``, or ``"reflect"`` (``nn.ReflectionPad2d(padding)`` then the
            convolution; needs ``padding < H`` and ``< W``).
        out: a contiguous tensor of the output's shape and dtype to write the result into,
            which may be ``x`` itself (``x`` is read completely before the first output is
            written); used when the output height and width are multiples of 4, otherwise a
            fresh tensor is returned. Fresh 40 MB maps cost about 15 ms each in page faults.

    Returns:
        ``[B, Cout, H + 2*padding - 2, W + 2*padding - 2]``, contiguous (``out`` when used).
    """
    if x.dim() != 4 or tuple(weight.shape[2:]) != (3, 3) or weight.shape[1] != x.shape[1]:
        raise ValueError(f"winograd_conv3x3 needs x [B, C, H, W] and weight [Cout, C, 3, 3]; "
                         f"got {tuple(x.shape)} and {tuple(weight.shape)}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    b, cin, h, w = x.shape
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflection padding {padding} needs an input larger than it, "
                         f"got {h}x{w}")
    cout = weight.shape[0]
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} is smaller than the 3x3 kernel")
    nh, nw = math.ceil(ho / 4), math.ceil(wo / 4)
    # channels innermost: every tile gather reads runs of contiguous channels
    xl = _padded_channels_last(x, padding, padding_mode, nh, nw)
    kb, _, ka = _transforms(x.device, x.dtype)
    u = transform_weight(weight, _buffer("weight", 36 * cout * cin, x))   # [36, Cout, Cin]
    exact_tiles = (4 * nh, 4 * nw) == (ho, wo)
    if out is None or not exact_tiles or out.shape != (b, cout, ho, wo) \
            or out.dtype != x.dtype or out.device != x.device or not out.is_contiguous():
        out = x.new_empty(b, cout, 4 * nh, 4 * nw)
    # chunks never mix batch items and depend only on the image size, so a photo gets the same
    # bits alone or in a batch (matrix-product kernels round differently for other shapes)
    rows = max(1, min(nh, -(-_TILES_PER_CHUNK // nw)))
    size = 36 * rows * nw * max(cin, cout)
    work_a, work_b = _buffer("a", size, x), _buffer("b", size, x)
    for i in range(b):
        for r0 in range(0, nh, rows):
            r = min(rows, nh - r0)
            t = r * nw
            tiles = xl[i, 4 * r0:4 * (r0 + r) + 2].unfold(0, 6, 4).unfold(1, 6, 4)
            # [r, nw, Cin, 6, 6] -> [36, (r nw) * Cin]: tile position first, channels last
            d = work_a[:36 * t * cin].view(6, 6, r, nw, cin)
            d.copy_(tiles.permute(3, 4, 0, 1, 2))
            v = work_b[:36 * t * cin].view(36, t * cin)
            torch.mm(kb, d.view(36, t * cin), out=v)                      # B^T d B
            # output channels before tiles, so that the tiles' pixels end up innermost below
            m = work_a[:36 * cout * t].view(36, cout, t)
            torch.bmm(u, v.view(36, t, cin).transpose(1, 2), out=m)       # [36, Cout, t]
            y = work_b[:16 * cout * t].view(16, cout, t)
            torch.mm(ka, m.view(36, cout * t), out=y.view(16, cout * t))  # A^T m A
            if bias is not None:
                y.add_(bias[:, None])
            # [a, b, Cout, r, nw] -> [Cout, r, a, nw, b] while the chunk is still in cache
            out[i, :, 4 * r0:4 * (r0 + r)].view(cout, r, 4, nw, 4).copy_(
                y.view(4, 4, cout, r, nw).permute(2, 3, 0, 4, 1))
    return out if exact_tiles else out[:, :, :ho, :wo].contiguous()
