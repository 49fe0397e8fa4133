"""Worst-case rounding-error bounds: the one mechanism behind the suite's numeric tolerances.

Why worst-case bounds and not measured margins: a tolerance tuned to the errors one CPU happens
to make fails on another. oneDNN, BLAS and PyTorch's vectorised reductions pick their
summation order from the CPU (8 float lanes on AVX2, 16 on AVX-512, other blockings, other
thread splits), so the same float32 convolution rounds differently on each; on AVX-512 the
direct convolution can come out *more* accurate than on AVX2, and a test that bounds
Winograd's error by a multiple of the direct one's fails there. Every bound below holds for
every order of summation, with or without fused multiply-adds, so it holds on every CPU.

The model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., ch. 2-3):
IEEE round to nearest, ``fl(a op b) = (a op b)(1 + d)`` with ``|d| <= u``, the unit roundoff
(``2**-24`` in float32, ``2**-53`` in float64). With ``gamma(n) = n u / (1 - n u)``:

* a sum of ``n`` terms, in any order and parenthesisation: ``|s^ - s| <= gamma(n - 1) sum |x_i|``;
* an inner product of length ``n`` (any order, FMA or not): ``<= gamma(n) sum |x_i y_i|``;
* errors compose: ``(1 + theta_j)(1 + theta_k) = 1 + theta_(j+k)`` with
  ``|theta_k| <= gamma(k)`` (Lemma 3.3), so a value that passes through ``k`` roundings in a
  chain of sums and products carries a relative error of at most ``gamma(k)``.

Each bound is evaluated element-wise in float64 from the actual operands (``|w| * |x|``
correlations), so it scales with the data and the accumulation length, not with one CPU.
(Underflow is covered by an absolute ``2**-126`` per elementary operation, which matters only
for data near zero.) Worst-case bounds are typically 10-10^3 times the errors a CPU really
makes (those grow like ``sqrt(n) u`` rather than ``n u``), yet a real bug - a wrong transform
coefficient, a shifted tile, a wrong padding - makes errors of the size of the data, far above
them: ``tests/test_winograd.py`` demonstrates it on deliberately broken transforms.

Import from a test module as ``from numeric_bounds import ...``: ``tests/conftest.py``
registers this file under that name, since pytest runs with ``--import-mode=importlib`` and
the tests folder is not on ``sys.path``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["unit_roundoff", "gamma", "check_within", "dot_bound", "matmul_bound",
           "conv2d_bound", "winograd_bound", "winograd_growth", "instance_norm_bound",
           "filter_bound", "attention_bound", "similarity_bound", "stack_tolerance",
           "STACK_AMPLIFICATION"]

#: Absolute error allowed per elementary operation for underflow (smallest normal float32).
TINY = 2.0 ** -126


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    """``u`` of ``dtype``: half the distance from 1 to the next float."""
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: the relative error bound of ``n`` roundings."""
    nu = n * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"gamma({n}) undefined in {dtype}: n u >= 1")
    return nu / (1 - nu)


def check_within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor | float,
                 what: str = "") -> float:
    """Assert ``|actual - expected| <= bound`` element-wise (float64); return the largest
    ratio ``|actual - expected| / bound`` so that tests can also assert how far a bug is out.
    """
    err = (actual.double() - expected.double()).abs()
    bound = torch.as_tensor(bound, dtype=torch.float64).expand_as(err)
    assert err.shape == bound.shape
    ratio = (err / bound.clamp_min(1e-300))
    worst = ratio.max().item() if ratio.numel() else 0.0
    if not worst <= 1.0:
        idx = tuple(int(i) for i in torch.unravel_index(ratio.argmax(), ratio.shape))
        raise AssertionError(
            f"{what}: |actual - expected| exceeds the rounding bound by {worst:.3g}x at {idx}: "
            f"error {err[idx].item():.3g}, bound {bound[idx].item():.3g} "
            f"(max error {err.max().item():.3g}, max bound {bound.max().item():.3g})")
    return worst


def dot_bound(abs_products: torch.Tensor, n: int, dtype: torch.dtype = torch.float32
              ) -> torch.Tensor:
    """Bound of an ``n``-term inner product (or ``n - 1`` additions plus one product each):
    ``gamma(n) * sum |x_i y_i|``, given that sum (float64)."""
    return gamma(n, dtype) * abs_products.double() + n * TINY


def matmul_bound(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype | None = None
                 ) -> torch.Tensor:
    """``|fl(a @ b) - a @ b| <= gamma(k) |a| @ |b|`` for ``[..., m, k] @ [..., k, n]``."""
    dtype = dtype or a.dtype
    return dot_bound(a.double().abs() @ b.double().abs(), a.shape[-1], dtype)


def _abs_padded(x: torch.Tensor, padding: int, padding_mode: str) -> torch.Tensor:
    xa = x.double().abs()
    if padding and padding_mode == "reflect":
        return F.pad(xa, (padding,) * 4, mode="reflect")
    return F.pad(xa, (padding,) * 4) if padding else xa


def conv2d_bound(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 padding: int = 0, padding_mode: str = "zeros", *, stride: int = 1,
                 dilation: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Element-wise bound on a direct convolution's rounding error (any algorithm that sums the
    ``Cin * kh * kw`` products and the bias in some order: oneDNN, im2col + GEMM, ...).

    ``gamma(Cin kh kw + 1) * (|w| (*) |x| + |b|)``: the inner-product bound, the bias being one
    more term. Not valid for Winograd or FFT convolutions (see :func:`winograd_bound`).
    ``dtype``: the precision of the computation being bounded (default ``x``'s).
    """
    dtype = dtype or x.dtype
    n = weight.shape[1] * weight.shape[2] * weight.shape[3] + 1
    s = F.conv2d(_abs_padded(x, padding, padding_mode), weight.double().abs(), stride=stride,
                 dilation=dilation)
    if bias is not None:
        s = s + bias.double().abs()[:, None, None]
    return dot_bound(s, n, dtype)


def _winograd_matrices(transforms=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if transforms is None:
        from oldphoto_core.runtime.winograd import _AT, _BT, _G
        transforms = (_AT, _G, _BT)
    return tuple(torch.tensor(m, dtype=torch.float64) for m in transforms)


#: Roundings on the longest path of one product term through
#: :func:`oldphoto_core.runtime.winograd.winograd_conv3x3`, besides the ``Cin`` of the channel sum:
#: 2 for ``kron(G, G)`` (formed in float64, rounded to float32) + 9 for the 9-term weight
#: transform, 36 for the input transform (a 36-term product with ``kron(B^T, B^T)``, exact
#: binary fractions), 36 for the output transform (``kron(A^T, A^T)``, exact) and 1 for the
#: bias. Zero entries of the transforms only make the real path shorter.
WINOGRAD_EXTRA_ROUNDINGS = 2 + 9 + 36 + 36 + 1


def winograd_bound(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   padding: int = 0, padding_mode: str = "zeros", *, transforms=None
                   ) -> torch.Tensor:
    """Element-wise bound on the rounding error of Winograd's F(4x4, 3x3) in float32.

    Derivation (the componentwise analysis of Barabasz, Anderson, Soodhalter & Gregg, "Error
    analysis and improving the accuracy of Winograd convolution for deep neural networks", ACM
    TOMS 46(4), 2020, specialised to this implementation). Per 6x6 input tile ``d_c`` of
    channel ``c`` and 3x3 kernel ``g_c``, flattened, with ``KA = A^T (x) A^T`` [16, 36],
    ``KG = G (x) G`` [36, 9] and ``KB = B^T (x) B^T`` [36, 36], the 4x4 output tile is

        y = KA [ sum_c (KG g_c) * (KB d_c) ] + b          (* element-wise)

    computed as four float32 products: ``U = fl(KG g)`` (9 terms, KG itself rounded),
    ``V = fl(KB d)`` (36 terms), ``M = fl(sum_c U V)`` (``Cin`` terms, a batched matrix
    product) and ``y = fl(KA M) + b`` (36 terms). Expanding, every elementary term
    ``KA_ij KG_jk g_ck KB_jl d_cl`` reaches the output through at most
    ``N = Cin + WINOGRAD_EXTRA_ROUNDINGS`` roundings, each a factor ``(1 + d)``, so

        |y^ - y| <= gamma(N) * ( |KA| [ sum_c (|KG| |g_c|) * (|KB| |d_c|) ] + |b| ).

    The operand ``|KA| ... |d|`` is this same algorithm run on absolute values in float64;
    dividing it by the direct bound's ``|w| (*) |x|`` gives the transform's error growth
    (:func:`winograd_growth`): 1 for the direct algorithm, up to ~10^2 for F(4x4, 3x3), which
    is why the interpolation points matter. ``transforms``: ``(AT, G, BT)`` to bound another
    point set (default: those of :mod:`oldphoto_core.runtime.winograd`).

    Args:
        x: ``[B, Cin, H, W]``; weight ``[Cout, Cin, 3, 3]``; bias ``[Cout]`` or None;
            ``padding``/``padding_mode`` as
            :func:`~oldphoto_core.runtime.winograd.winograd_conv3x3`.

    Returns:
        ``[B, Cout, H + 2 p - 2, W + 2 p - 2]`` float64.
    """
    at, g, bt = _winograd_matrices(transforms)
    ka, kg, kb = (torch.kron(m.abs(), m.abs()) for m in (at, g, bt))  # |M (x) M| = |M| (x) |M|
    b, cin, h, w = x.shape
    cout = weight.shape[0]
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    nh, nw = -(-ho // 4), -(-wo // 4)
    xp = _abs_padded(x, padding, padding_mode)
    xp = F.pad(xp, (0, 4 * nw + 2 - xp.shape[-1], 0, 4 * nh + 2 - xp.shape[-2]))
    tiles = xp.unfold(2, 6, 4).unfold(3, 6, 4)                 # [B, Cin, nh, nw, 6, 6]
    d = tiles.permute(4, 5, 0, 2, 3, 1).reshape(36, b * nh * nw * cin)
    v = (kb @ d).view(36, b * nh * nw, cin)                    # |KB| |d|
    u = (kg @ weight.double().abs().reshape(cout * cin, 9).t()).view(36, cout, cin)
    m = torch.bmm(v, u.transpose(1, 2))                        # [36, tiles, Cout]
    y = (ka @ m.view(36, -1)).view(4, 4, b, nh, nw, cout)
    y = y.permute(2, 5, 3, 0, 4, 1).reshape(b, cout, 4 * nh, 4 * nw)[:, :, :ho, :wo]
    if bias is not None:
        y = y + bias.double().abs()[:, None, None]
    n = cin + WINOGRAD_EXTRA_ROUNDINGS
    return gamma(n) * y + 36 * 36 * 9 * cin * TINY


def winograd_growth(transforms=None) -> float:
    """How much larger Winograd's error bound is than the direct one's, at worst.

    The largest ratio over the 16 outputs of a tile of ``|KA| ((|KG| 1_9) * (|KB| 1_36))``
    (every ``|g|`` and ``|d|`` equal to 1) to the direct algorithm's ``9`` (its ``|w| * |x|``
    for the same operands). A property of the interpolation points alone.
    """
    at, g, bt = _winograd_matrices(transforms)
    ka, kg, kb = (torch.kron(m.abs(), m.abs()) for m in (at, g, bt))
    per_output = ka @ ((kg @ torch.ones(9, dtype=torch.float64))
                       * (kb @ torch.ones(36, dtype=torch.float64)))
    return per_output.max().item() / 9


def instance_norm_bound(x: torch.Tensor, eps: float = 1e-5,
                        dtype: torch.dtype | None = None) -> torch.Tensor:
    """Element-wise bound on the rounding error of ``instance_norm(x)`` (no affine) computed
    in ``dtype`` (or with wider accumulators): ``blocks.instance_norm_`` (centre, then sum
    squares), ``runtime.strips._instance_norm_`` (float64 sums of x and x^2) and PyTorch's kernels
    (two-pass statistics, then ``x * (1/s) + (-mean/s)``).

    With ``n`` pixels, ``s = sqrt(var + eps)``, ``y = (x - mean) / s``: the mean errs by
    ``e_m <= gamma(n) mean|x|``; centring, or the affine form, adds at most two roundings of
    ``(|x| + |mean|) / s``; the variance errs by ``gamma(n + 3) mean(x^2) + 2 |mean| e_m +
    e_m^2`` whether the squares are centred first or not (which covers one-pass formulas), and
    ``y`` by half that relative to ``s^2``; the reciprocal square root and the last product
    add ``gamma(6)`` relative:

        |y^ - y| <= (e_m + gamma(2) (|x| + |mean|)) / s
                    + |y| (var_err / (2 s^2) + gamma(6)).
    """
    dtype = dtype or x.dtype
    xd = x.double()
    n = xd.shape[-1] * xd.shape[-2]
    dims = (-2, -1)
    mean = xd.mean(dim=dims, keepdim=True)
    s2 = xd.var(dim=dims, unbiased=False, keepdim=True) + eps
    s = s2.sqrt()
    y = (xd - mean) / s
    e_m = gamma(n, dtype) * xd.abs().mean(dim=dims, keepdim=True)
    var_err = gamma(n + 3, dtype) * (xd * xd).mean(dim=dims, keepdim=True) \
        + 2 * mean.abs() * e_m + e_m ** 2
    return ((e_m + gamma(2, dtype) * (xd.abs() + mean.abs())) / s
            + y.abs() * (var_err / (2 * s2) + gamma(6, dtype)) + n * TINY)


def filter_bound(x: torch.Tensor, kernel_1d: torch.Tensor, *, running_sum: bool = False,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bound on a separable 2-D filter with a normalised 1-D kernel (weights >= 0, sum 1)
    applied along both axes (Gaussian or box blur), for any border handling that reads
    pixels of ``x``: ``|y| <= max|x|`` per axis, so per output

        |y^ - y| <= (2 e_k + gamma(2 k)) max|x|,

    ``e_k = gamma(k + 3)`` the relative error of kernel weights computed in float32 (an
    ``exp`` of 1 ulp, a ``k``-term normalising sum and a division), ``gamma(2 k)`` the two
    ``k``-term passes. ``running_sum``: an implementation that slides a window sum along a
    row of ``L`` pixels (OpenCV's box filter) adds and removes one pixel per step, so a sum's
    error grows to ``gamma(2 L + k)`` of ``sum |x|`` over the ``L + k`` pixels it has touched.
    Returns a float (the bound for every output).
    """
    k = kernel_1d.numel()
    peak = x.double().abs().max().item()
    if running_sum:
        length = max(x.shape[-2:]) + k
        per_axis = gamma(2 * length + k, dtype) * length / k  # sum of |x| over L + k, / k
        return (2 * gamma(k + 3, dtype) + 2 * per_axis + gamma(2, dtype)) * peak
    return (2 * gamma(k + 3, dtype) + gamma(2 * k, dtype)) * peak


#: Accuracy of ``exp`` in the kernels our softmaxes run through, in ulps: Sleef's ``u10``
#: (1 ulp) in PyTorch's softmax, ``exp_u20`` ("ULP=20", ATen/cpu/vec/vec*_float.h) in its
#: fused CPU attention kernel, the C library's (< 1 ulp) elsewhere. Float64: Sleef ``u10``.
EXP_ULPS = {torch.float32: 20, torch.float64: 1}


def attention_bound(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor,
                    key_weight: torch.Tensor, dtype: torch.dtype | None = None,
                    eps: float = 1e-12) -> torch.Tensor:
    """Bound on the rounding error of the masked, L1-renormalised softmax attention
    ``y_i = sum_j a_ij g_j``, ``a_ij = w_j exp(f_ij) / max(sum_k w_k exp(f_ik), eps Z_i)``
    with ``f_ij = theta_i . phi_j`` and ``Z_i = sum_k exp(f_ik)`` (all keys), for any of the
    implementations (the reference's N x N formulation, our chunked loop, the fused kernel).

    Every weight ``a_ij`` is a ratio of positive terms, so its relative error adds up from:
    the scores, each a ``C``-term inner product off by ``df_ij <= gamma(C) |theta_i|.|phi_j|``,
    which moves a ratio of exponentials by ``exp(2 max_j df_ij) - 1``; ``exp`` itself
    (:data:`EXP_ULPS`, numerator and denominator); the rounding of ``f - max`` before ``exp``
    (``u |f - max|``, relative after ``exp``); the sums, divisions and weights of the
    normalisation (``gamma(2 N + 8)``); a fused kernel's rescaling of its running sums, once
    per block of keys (``exp`` + 3 roundings each, blocks of >= 64 keys). The value sum adds
    ``gamma(N + 1)``. Rows whose clean mass is near ``eps`` also carry the error of that mass
    (two log-sum-exps, ``gamma(4) (|lse| + 1)`` each, plus the scores'). Hence, per query,

        |y^_i - y_i| <= sum_j a_ij |g_j| (rho_ij + gamma(N + 1)),

    evaluated in float64. Arguments as :func:`oldphoto_core.arch.partial_nonlocal.\
partial_attention`: ``[B, C, N]`` and ``[B, N]``. Returns ``[B, C, N]``.
    """
    dtype = dtype or theta.dtype
    u = unit_roundoff(dtype)
    e_exp = 2 * u * EXP_ULPS[dtype]
    th, ph, gv, w = (t.double() for t in (theta, phi, g, key_weight))
    c, n = th.shape[1], th.shape[2]
    f = th.transpose(1, 2) @ ph                                     # [B, Nq, Nk]
    df = gamma(c, dtype) * (th.abs().transpose(1, 2) @ ph.abs())
    delta = df.amax(dim=2, keepdim=True)
    lse_all = torch.logsumexp(f, dim=2, keepdim=True)
    logw = torch.where(w > 0, w.clamp_min(1e-300).log(), -math.inf)[:, None, :]
    lse_clean = torch.logsumexp(f + logw, dim=2, keepdim=True)
    top = torch.where(w[:, None, :] > 0, f, -math.inf).amax(dim=2, keepdim=True)
    shifted = (f - top).abs().clamp_max(1e3)  # only valid keys carry weight below
    a = torch.exp(f + logw - lse_clean).nan_to_num(0.0)             # softmax over clean keys
    mass = torch.exp(lse_clean - lse_all).nan_to_num(0.0)
    a = a * (mass / eps).clamp(max=1.0)
    blocks = -(-n // 64) + 1
    rho = (torch.expm1(2 * delta) + 2 * e_exp + u * (shifted + shifted.where(
        a > 0, torch.zeros_like(shifted)).amax(dim=2, keepdim=True))
        + blocks * (e_exp + 3 * u) + gamma(2 * n + 8, dtype))
    near_eps = (mass < 2 * eps).double()
    rho = rho + near_eps * (2 * delta + gamma(4, dtype) * (lse_all.abs() + lse_clean.abs()
                                                            .nan_to_num(0.0, posinf=0.0,
                                                                        neginf=0.0) + 2))
    per_key = a * (rho + gamma(n + 1, dtype))                      # [B, Nq, Nk]
    return (per_key @ gv.abs().transpose(1, 2)).transpose(1, 2) + n * TINY


def similarity_bound(src, dst, ops: int = 100):
    """Bound on the entries of a least-squares 2-D similarity ``[3, 3]`` (Umeyama) estimated
    from ``[N, 2]`` point sets in float64: by its closed form (``faces.estimate_similarity``)
    or through an SVD of the 2x2 covariance ``A`` (scikit-image).

    Both are backward stable: each perturbs ``A`` by ``O(u) |A|`` and the centred points by
    ``O(u)`` of their size. The linear part ``scale * R`` moves by ``c u |A|_F / var``
    (``var`` the source points' variance) even where ``R`` alone is ill-conditioned
    (reflected configurations, equal singular values: there ``scale`` is as small as ``R``'s
    sensitivity is large); the translation ``mean(dst) - scale R mean(src)`` by that times
    ``|mean(src)|`` plus ``c u (|mean(dst)| + |scale R mean(src)|)``. ``c = ops`` counts the
    roundings: the means, variance and covariance sums over N points, LAPACK's 2x2 SVD
    (a few dozen operations), the products; 100 covers N <= 10. Returns a ``[3, 3]`` array.
    """
    import numpy as np
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    u = unit_roundoff(torch.float64)
    sm, dm = s.mean(0), d.mean(0)
    p, q = s - sm, d - dm
    var = p.var(axis=0).sum()
    a_norm = np.linalg.norm(q.T @ p / len(s))
    lin = ops * u * (a_norm / var + (np.abs(q).max() + np.abs(p).max() * a_norm / var)
                     / np.sqrt(var))
    t = lin * np.abs(sm).sum() + ops * u * (np.abs(dm).max() + a_norm / var * np.abs(sm).sum())
    out = np.zeros((3, 3))
    out[:2, :2] = lin
    out[:2, 2] = t
    return out


#: How much the rest of a network may amplify one layer's relative rounding error, for
#: :func:`stack_tolerance` in float64. Not computable as a useful worst case (propagating
#: ``|W|`` overestimates by ~sqrt(Cin kh kw) per layer, exponentially in depth); instance
#: norms bring every map back to unit scale and the randomly initialised test networks
#: amplify by small factors. In float64 a 100x allowance still leaves the tolerance 10^4 or
#: more below the errors of a real bug (wrong halo, padding, statistics, batch item). Float32
#: comparisons pass ``amplification=1``: there the per-layer worst case ``gamma(T) sqrt(T)``
#: already exceeds the errors rounding really makes (``~ sqrt(T) u`` of ``sum |w||x|``,
#: Higham & Mary 2019) by ~sqrt(T) >= 10, which is the allowance; and a float32 network
#: comparison is better made bit-exact or moved to float64 wherever the test allows it.
STACK_AMPLIFICATION = 100.0


def stack_tolerance(module: nn.Module, scale: float, *, pixels: int,
                    dtype: torch.dtype = torch.float64,
                    amplification: float = STACK_AMPLIFICATION) -> float:
    """Tolerance between two code paths through the same network (strips vs whole map,
    in-place walk vs layer by layer, batch vs items) that differ only in summation order.

    Per layer, first order: a convolution of ``T = Cin kh kw`` products errs by at most
    ``gamma(T + 1) sum |w||x|``, and ``sum |w||x| <= sqrt(T) |w| |x|`` (Cauchy-Schwarz), the
    scale of its output; an instance norm over ``P <= pixels`` values errs by about
    ``gamma(P + 3)`` of its (unit) output scale (:func:`instance_norm_bound`). Summed over the
    layers, amplified by at most ``amplification`` on the way to the output, for each of the
    two paths:

        2 * amplification * (n_conv gamma(T + 1) sqrt(T) + n_norm gamma(P + 3)) * scale.

    ``scale``: the output's largest magnitude. ``pixels``: the largest map's pixel count.
    See :data:`STACK_AMPLIFICATION` for the amplification in float64 and float32.
    """
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d,
                                                            nn.Linear))
             or hasattr(m, "weight_orig")]
    norms = [m for m in module.modules() if isinstance(m, (nn.InstanceNorm2d,
                                                            nn.BatchNorm2d))]

    def terms(m: nn.Module) -> int:
        w = getattr(m, "weight_orig", None)
        w = m.weight if w is None else w
        if isinstance(m, nn.ConvTranspose2d):  # weight [Cin, Cout/groups, kh, kw]
            return w.shape[0] * w.shape[2] * w.shape[3]
        return w[0].numel()

    t = max((terms(m) for m in convs), default=1)
    per_layer = len(convs) * gamma(t + 1, dtype) * math.sqrt(t) \
        + len(norms) * gamma(pixels + 3, dtype)
    return 2 * amplification * per_layer * scale
