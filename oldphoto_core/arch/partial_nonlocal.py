"""The partial non-local block (paper §3.2, eq. 7-10) in O(N) memory.

The reference builds the full ``N x N`` affinity of all latent positions (N = H/4 * W/4), then
zeroes the columns of damaged keys and renormalises each row: 6.4 GB for a 496x624 photo and
~527 GiB for a 2000x3008 scan. We compute the identical function query chunk by query chunk, with
the damaged keys removed from the key set (their weight is zero anyway), so memory is
``O(N * chunk)`` and the value product skips the damaged keys entirely. On CPUs the softmax
over the clean keys runs in PyTorch's fused attention kernel (:func:`_fused_kernel`).

Exactness, including the corner cases of the reference:

* The reference normalises with ``F.normalize(p=1, eps=1e-12)`` *after* a softmax over all keys.
  When the clean keys hold less than 1e-12 of the softmax mass, its rows are shrunk by
  ``mass / 1e-12`` instead of being renormalised; with no clean key at all they are zero. We
  reproduce both by computing the log-sum-exp of the damaged keys' logits (no value product).
* The clean indicator of a key may be fractional when the caller passes a soft mask; it then
  enters as a log-weight (key bias), which is what multiplying the softmax by it amounts to.
* Every query is computed, not only the damaged ones: the block runs three residual blocks
  (3x3 convolutions + instance norm over the whole map) on the attention output *before* the
  fusion of eq. 10 keeps the clean positions, so clean queries influence the damaged outputs
  through the convolutions' receptive field and the normalisation statistics.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.progress import is_responsive, report
from .blocks import ResnetBlock, Runner, run_stack
from .conv import Conv2d

__all__ = ["PartialNonLocalBlock", "partial_attention", "clean_indicator"]

#: Elements of one chunk's logit matrix (``chunk x keys``); 2**25 floats = 128 MiB on CPU,
#: 2**28 (1 GiB) on GPUs, where larger matrix products keep the device busy.
DEFAULT_CHUNK_ELEMENTS = 1 << 25
GPU_CHUNK_ELEMENTS = 1 << 28
_RENORM_EPS = 1e-12  # F.normalize's default, which the reference uses


def clean_indicator(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Which latent positions count as clean, from an image-resolution scratch mask.

    Reproduces the reference exactly (``F.interpolate`` defaults, align_corners=False): a
    position is damaged when the bilinear resize of the mask is > 0 there, and it is further
    weighted by the nearest-neighbour resize of ``1 - mask`` (which samples another source pixel
    than the bilinear taps, so both matter).

    Args:
        mask: ``[B, 1, H, W]`` float, 1 = scratch (usually {0, 1}).
        size: latent ``(h, w)``.

    Returns:
        ``[B, 1, h, w]`` float in [0, 1]; 1 = clean.
    """
    hit = F.interpolate(mask, size, mode="bilinear", align_corners=False)
    clean = torch.where(hit > 0, torch.zeros_like(hit), 1 - hit)
    return clean * F.interpolate(1 - mask, size, mode="nearest")


def _chunk_rows(n_queries: int, n_keys: int, chunk_elements: int) -> int:
    return max(1, min(n_queries, chunk_elements // max(n_keys, 1)))


#: exp() of anything below this is a float32 denormal or zero: < 2e-38 next to the row maximum's
#: exp(0) = 1, so it cannot change a float32 (or float64) row sum or weighted mean. PyTorch's
#: vectorised exp takes a scalar slow path for such inputs (about 15x slower on AVX2), and with
#: trained 512-channel features most logits of a row lie hundreds below its maximum.
_EXP_FLOOR = -87.0

#: Most queries per call of the fused kernel.
FUSED_QUERY_ROWS = 4096

#: Logits (queries x keys) per call on CPU when the caller asked for responsive progress
#: (:func:`oldphoto_core.runtime.progress.responsive`, the ComfyUI nodes). The progress hook runs
#: between calls and is where Cancel lands: 2**23 logits at 512 channels are about 17 GFLOP,
#: 0.2 s on 2 cores, where 4096 rows against 16384 keys took 1-4 s. The size depends on the
#: shapes only, never on timing.
CPU_CALL_LOGITS = 1 << 23


def _cpu_rows(n_queries: int, n_keys: int) -> int:
    """Queries per fused call: :data:`FUSED_QUERY_ROWS`, or :data:`CPU_CALL_LOGITS` worth when
    responsive, in whole blocks of 64 queries (the kernel's row blocks: a row's result does not
    depend on the call it is in, checked bit-identical from 64 to 4096 rows)."""
    if not is_responsive():
        return max(1, min(n_queries, FUSED_QUERY_ROWS))
    rows = max(64, CPU_CALL_LOGITS // max(n_keys, 1) // 64 * 64)
    return max(1, min(n_queries, FUSED_QUERY_ROWS, rows))


def _log_mass_inplace(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``logits`` [n, K] into ``exp(logits - rowmax)`` in place; return (rowmax, rowsum).

    In-place and single-pass on purpose: for a chunk of 10^7-10^8 logits the elementwise work
    is memory-bound, and ``torch.logsumexp`` + ``exp`` would read the matrix three more times.
    """
    m = logits.amax(dim=1, keepdim=True)
    logits.sub_(m).clamp_(min=_EXP_FLOOR).exp_()
    return m.squeeze(1), logits.sum(dim=1)


def _fused_kernel(queries: torch.Tensor):
    """PyTorch's fused CPU attention that also returns the log-sum-exp, or None.

    ``aten::_scaled_dot_product_flash_attention_for_cpu`` (what ``scaled_dot_product_attention``
    runs on CPU) computes ``softmax(q k^T) v`` block by block in cache, at matrix-product speed:
    1.4x faster than our chunked loop at 124x156, whose 128 MiB logit chunks stream through
    memory four times. It is a private operator, so it is used only when its schema is the one
    we call (checked once); the chunked loop remains the fallback (other devices, other PyTorch
    versions, soft key weights).
    """
    if queries.device.type != "cpu" or queries.dtype not in (torch.float32, torch.float64):
        return None
    return _cpu_flash_attention()


@lru_cache(maxsize=1)
def _cpu_flash_attention():
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    try:
        schema = op.default._schema
        args = [a.name for a in schema.arguments]
        returns = [r.name for r in schema.returns]
    except (AttributeError, RuntimeError):
        return None
    expected = ["query", "key", "value", "dropout_p", "is_causal", "attn_mask", "scale"]
    return op if args == expected and returns == ["output", "logsumexp"] else None


def _clean_attention_fused(kernel, queries: torch.Tensor, keys: torch.Tensor,
                           values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax(q k^T) v, logsumexp(q k^T))`` for ``[n, C]`` queries and ``[Nv, C]`` keys.

    Callers guarantee ``n > 0`` and ``Nv > 0``: the kernel dies with SIGFPE on zero keys.
    """
    y, lse = kernel(queries[None, None], keys[None, None], values[None, None], 0.0, False,
                    scale=1.0)
    return y[0, 0], lse[0, 0]


def _clean_softmax_chunked(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                           log_w: torch.Tensor | None, buffer: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Our own loop's counterpart of :func:`_clean_attention_fused`, for one query chunk.

    Returns ``(y, lse, lse_plain)``: the softmax over the (weighted) clean keys applied to the
    values, its log-sum-exp, and - with soft key weights ``log_w`` - the unweighted log-sum-exp
    that the full softmax's mass needs (else None). ``buffer`` holds the chunk's logits.
    """
    n, nv = queries.shape[0], keys.shape[0]
    logits = torch.mm(queries, keys.t(), out=buffer[:n * nv].view(n, nv))
    lse_plain = None
    if log_w is not None:
        lse_plain = torch.logsumexp(logits, dim=1)
        logits.add_(log_w)
    m, s = _log_mass_inplace(logits)
    y = (logits @ values).div_(s[:, None])
    return y, m + torch.log(s), lse_plain


def _damaged_log_mass(queries: torch.Tensor, damaged: torch.Tensor, rows: int) -> torch.Tensor:
    """``logsumexp(q d^T)`` over the damaged keys, ``rows`` queries at a time: ``[n]``."""
    out = queries.new_empty(queries.shape[0])
    for start in range(0, queries.shape[0], rows):
        md, sd = _log_mass_inplace(queries[start:start + rows] @ damaged.t())
        out[start:start + rows] = md + torch.log(sd)
    return out


def _shrink_below_eps(y: torch.Tensor, lse_clean: torch.Tensor,
                      lse_all: torch.Tensor | None) -> torch.Tensor:
    """Apply the reference's ``max(mass, 1e-12)`` renormalisation to softmax rows ``y``.

    ``mass`` is the fraction of the full softmax held by the (weighted) clean keys; rows where
    it is below the eps are shrunk by ``mass / 1e-12`` rather than renormalised to 1.
    """
    if lse_all is not None:
        mass = torch.exp(lse_clean - lse_all)
        y.mul_(torch.clamp(mass / _RENORM_EPS, max=1.0)[:, None])
    return y


def partial_attention(theta: torch.Tensor, phi: torch.Tensor, g: torch.Tensor,
                      key_weight: torch.Tensor, *,
                      chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Softmax attention whose key weights are masked and L1-renormalised, chunked.

    Computes, for every query ``i``,
    ``y_i = sum_j a_ij g_j`` with ``a_ij = s_ij w_j / max(sum_k s_ik w_k, 1e-12)`` and
    ``s_ij = softmax_j(theta_i . phi_j)`` - the reference's masked, renormalised affinity - without
    ever holding more than ``chunk_elements`` logits.

    On CPU with 0/1 key weights, the softmax over the clean keys runs in PyTorch's fused
    attention kernel (:func:`_fused_kernel`); everything else takes the chunked loop. Both give
    the same function; they differ by float rounding only.

    Args:
        theta: queries ``[B, C, N]``.
        phi: keys ``[B, C, N]``.
        g: values ``[B, C, N]``.
        key_weight: ``[B, N]`` in [0, 1], 0 = damaged key (excluded).
        chunk_elements: budget for one chunk's logit matrix.

    Progress (queries done of ``B * N``) goes to :func:`oldphoto_core.runtime.progress.reporting`'s
    callback after every chunk.

    Returns:
        ``[B, C, N]`` attention output.
    """
    b, c, n = theta.shape
    out = theta.new_zeros(b, c, n)
    report(0, b * n)
    kernel = _fused_kernel(theta)
    for i in range(b):
        w = key_weight[i]
        valid = w > 0
        if n == 0 or not bool(valid.any()):
            continue  # no clean key: the reference's renormalisation yields zeros
        keys = phi[i].t()[valid].contiguous()            # [Nv, C]
        values = g[i].t()[valid].contiguous()            # [Nv, C]
        damaged = phi[i].t()[~valid].contiguous()        # [Nd, C]
        wv = w[valid]
        log_w = torch.log(wv) if bool((wv < 1).any()) else None
        queries = theta[i].t()                           # [N, C]
        fused = kernel is not None and log_w is None
        if fused:
            step = _cpu_rows(n, keys.shape[0])
        else:
            budget = min(chunk_elements, CPU_CALL_LOGITS) \
                if theta.device.type == "cpu" and is_responsive() else chunk_elements
            step = _chunk_rows(n, keys.shape[0] + damaged.shape[0], budget)
            # one logit buffer for all chunks: a fresh 10^8-byte allocation per chunk would be
            # paid again in page faults (about 40 ms each on CPU)
            buffer = queries.new_empty(step * keys.shape[0])
        damaged_rows = _chunk_rows(step, damaged.shape[0], chunk_elements)
        for start in range(0, n, step):
            q = queries[start:start + step]
            if fused:
                y, lse = _clean_attention_fused(kernel, q.contiguous(), keys, values)
                lse_plain = None
            else:
                y, lse, lse_plain = _clean_softmax_chunked(q, keys, values, log_w, buffer)
            if damaged.shape[0]:
                unweighted = lse if lse_plain is None else lse_plain
                lse_all = torch.logaddexp(unweighted, _damaged_log_mass(q, damaged, damaged_rows))
            else:
                lse_all = lse_plain  # None for 0/1 weights: the clean keys hold all the mass
            out[i, :, start:start + step] = _shrink_below_eps(y, lse, lse_all).t()
            report(i * n + min(start + step, n), b * n)  # queries done; the hook may abort
    return out


def _pointwise(x: torch.Tensor, *convs: nn.Conv2d) -> torch.Tensor:
    """1x1 convolutions of ``x`` ``[B, C, N]`` stacked along channels: ``[B, sum(Cout), N]``.

    One matrix product for all of them (theta, phi and g read the same input): on CPUs this
    runs at BLAS speed, 2-3x faster than three oneDNN 1x1 convolutions of a 512-channel map.
    """
    weight = torch.cat([conv.weight.flatten(1) for conv in convs])
    bias = torch.cat([conv.bias for conv in convs])
    return torch.baddbmm(bias[None, :, None].expand(x.shape[0], -1, x.shape[2]),
                         weight.expand(x.shape[0], -1, -1), x)


class PartialNonLocalBlock(nn.Module):
    """Partial non-local block with residual refinement, fused by the clean mask (eq. 10).

    Checkpoint keys: ``g``, ``theta``, ``phi``, ``W`` (1x1 convs) and ``res_block.0-2``.
    ``forward(x, mask)``: ``x`` latent features ``[B, C, h, w]``, ``mask`` the scratch mask at
    IMAGE resolution ``[B, 1, H, W]`` (1 = scratch); returns ``[B, C, h, w]`` where clean
    positions keep ``x`` and damaged ones take the refined attention result.
    """

    def __init__(self, channels: int = 512, *, chunk_elements: int | None = None) -> None:
        super().__init__()
        self.chunk_elements = chunk_elements
        self.g = Conv2d(channels, channels, kernel_size=1)
        self.W = Conv2d(channels, channels, kernel_size=1)
        self.theta = Conv2d(channels, channels, kernel_size=1)
        self.phi = Conv2d(channels, channels, kernel_size=1)
        self.res_block = nn.Sequential(*(ResnetBlock(channels) for _ in range(3)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                runner: Runner | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        clean = clean_indicator(mask.to(x.dtype), (h, w))
        chunk = self.chunk_elements or (DEFAULT_CHUNK_ELEMENTS if x.device.type == "cpu"
                                        else GPU_CHUNK_ELEMENTS)
        theta, phi, g = _pointwise(x.flatten(2), self.theta, self.phi, self.g).split(c, dim=1)
        y = partial_attention(theta, phi, g, clean.flatten(1), chunk_elements=chunk)
        del mask, theta, phi, g
        refined = run_stack(self.res_block, _pointwise(y, self.W).view(b, c, h, w), runner)
        del y
        # eq. 10: clean positions keep x, damaged ones take the refined attention result
        return refined.mul_(1 - clean).add_(clean * x)
