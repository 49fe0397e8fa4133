"""3x3 convolution by Winograd's minimal filtering F(4x4, 3x3), in float32, with PyTorch ops.

Why: on CPUs the restoration's time goes into 512-channel 3x3 convolutions (about twenty of
them in the scratch mapping), which oneDNN computes directly, at nine multiplications per
output per channel pair. F(4x4, 3x3) computes each 4x4 output tile from a 6x6 input tile with
36 element-wise products instead of 144, i.e. 2.25 multiplications per output: the same
convolution in about 4x fewer multiply-adds, spent in one batched matrix product (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", CVPR 2016).

It is an exact algorithm, not an approximation: in real arithmetic it equals the direct
convolution. In float32 its rounding differs; with well-chosen interpolation points (below) the
measured error stays at the level of float32 summation-order differences (a few 1e-6 of the
output's peak, see ``tests/test_winograd.py``), inside every parity tolerance of the kit.
``precision="direct"`` turns it off where bit-for-bit agreement with PyTorch's direct
convolution matters.

Memory stays bounded on large maps: tile rows are processed in chunks whose transformed tiles
fit a fixed budget.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ["winograd_conv3x3", "transform_weight"]

#: Tiles per chunk: enough rows for the batched product to run near the CPU's peak, few enough
#: that one chunk's transformed tiles (36 x tiles x channels) stay in the last-level cache.
_TILES_PER_CHUNK = 320

# F(4, 3) by Toom-Cook with interpolation points 0, 1, -1, 2, -1/2 and infinity. Lavin & Gray
# use 0, +-1, +-2; Barabasz et al. ("Error analysis and improving the accuracy of Winograd
# convolution for deep neural networks", ACM TOMS 2020) show that mixing 2 and -1/2 keeps the
# transforms' entries smaller. Measured on 512-channel maps: max error 2.5e-6 of the output's
# peak, against 7.6e-6 with Lavin & Gray's points and 2.0e-6 for the direct convolution.
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


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[Cout, Cin, 3, 3]`` -> ``[36, Cout, Cin]``: ``G g G^T`` for every channel pair.

    One matrix product straight into the layout the batched product reads (transposed), so no
    copy of the 4x larger transformed weights is made.
    """
    cout, cin = weight.shape[:2]
    _, kg, _ = _transforms(weight.device, weight.dtype)
    return (kg @ weight.detach().reshape(cout * cin, 9).t()).view(36, cout, cin)


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride=1, padding=padding)`` for a 3x3 kernel, by F(4x4, 3x3).

    Args:
        x: ``[B, Cin, H, W]`` float32.
        weight: ``[Cout, Cin, 3, 3]``.
        bias: ``[Cout]`` or None.
        padding: zero padding on every side (as ``nn.Conv2d``'s ``padding``).

    Returns:
        ``[B, Cout, H + 2*padding - 2, W + 2*padding - 2]``.
    """
    if x.dim() != 4 or tuple(weight.shape[2:]) != (3, 3) or weight.shape[1] != x.shape[1]:
        raise ValueError(f"winograd_conv3x3 needs x [B, C, H, W] and weight [Cout, C, 3, 3]; "
                         f"got {tuple(x.shape)} and {tuple(weight.shape)}")
    b, cin, h, w = x.shape
    cout = weight.shape[0]
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} is smaller than the 3x3 kernel")
    nh, nw = math.ceil(ho / 4), math.ceil(wo / 4)
    # channels-last copy with zero borders: the requested padding, plus what completes the last
    # tile row and column; channels innermost makes every tile gather a run of contiguous reads
    xl = x.new_zeros(b, 4 * nh + 2, 4 * nw + 2, cin)
    xl[:, padding:padding + h, padding:padding + w] = x.permute(0, 2, 3, 1)
    kb, _, ka = _transforms(x.device, x.dtype)
    u = transform_weight(weight).transpose(1, 2)                          # [36, Cin, Cout]
    out = x.new_empty(b, 4 * nh, 4 * nw, cout)                            # channels last
    # chunks never mix batch items and depend only on the image size, so a photo gets the same
    # bits alone or in a batch (matrix-product kernels round differently for other shapes)
    rows = max(1, min(nh, -(-_TILES_PER_CHUNK // nw)))
    for i in range(b):
        for r0 in range(0, nh, rows):
            r = min(rows, nh - r0)
            t = r * nw
            tiles = xl[i, 4 * r0:4 * (r0 + r) + 2].unfold(0, 6, 4).unfold(1, 6, 4)
            # [r, nw, Cin, 6, 6] -> [36, (r nw) * Cin]: tile position first, channels last
            d = tiles.permute(3, 4, 0, 1, 2).reshape(36, t * cin)
            v = (kb @ d).view(36, t, cin)                                 # B^T d B
            m = torch.bmm(v, u)                                           # [36, t, Cout]
            y = (ka @ m.view(36, t * cout)).view(4, 4, r, nw, cout)      # A^T m A
            out[i, 4 * r0:4 * (r0 + r)].view(r, 4, nw, 4, cout).copy_(y.permute(2, 0, 3, 1, 4))
    if bias is not None:
        out.add_(bias)
    return out[:, :ho, :wo].permute(0, 3, 1, 2).contiguous()
