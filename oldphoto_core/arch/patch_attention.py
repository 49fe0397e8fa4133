"""Multi-scale patch attention of the high-resolution mapping (inference path).

Each scale cuts the features into non-overlapping ``p x p`` patches; a patch whose share of
damaged positions exceeds 60 % is replaced by the undamaged patch of highest cosine similarity
(hard selection), and a 3x3 conv fuses ``[input, composed features, mask]``. This is the
reference's ``Patch_Attention_4.inference_forward`` (the memory-saving path ``test.py --HR``
uses); its plain ``forward`` is a different computation and is not reproduced.

Differences from the reference, all outside what it can run:

* batches: the reference selects patches from batch item 0's mask for every item; we select per
  item (identical for batch size 1);
* when *every* patch is damaged the reference fails (max over no keys); we keep the features;
* the query/key similarity is computed in chunks of queries, so memory stays bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResnetBlock, Runner, run_stack
from .conv import Conv2d

__all__ = ["PatchAttention", "damaged_latent_mask"]

_DAMAGED_PATCH_SHARE = 0.6
_CHUNK_ELEMENTS = 1 << 24


def damaged_latent_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Image-resolution mask ``[B,1,H,W]`` -> latent-grid {0,1} mask (bilinear resize, > 0)."""
    m = F.interpolate(mask, size, mode="bilinear", align_corners=False)
    return torch.where(m > 0, torch.ones_like(m), m)


def _best_key_per_query(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Index of the most cosine-similar key for every query (``[Q, D]``, ``[K, D]`` -> ``[Q]``)."""
    qn = F.normalize(queries, dim=1)
    kn = F.normalize(keys, dim=1).t()
    rows = max(1, _CHUNK_ELEMENTS // max(keys.shape[0], 1))
    best = []
    for start in range(0, qn.shape[0], rows):
        # softmax before argmax: monotone, but kept so that float ties break as in the reference
        corr = torch.softmax(qn[start:start + rows] @ kn, dim=1)
        best.append(corr.argmax(dim=1))
    return torch.cat(best)


class PatchAttention(nn.Module):
    """One scale of patch attention. Keys: ``F_Combine`` (3x3, 2C+1 -> C), ``res_block.0``.

    Shape:
        - ``z``: ``[B, C, h, w]``; ``mask``: ``[B, 1, H, W]`` at image resolution (1 = scratch)
        - Output: ``[B, C, h, w]``
    """

    def __init__(self, channels: int = 512, *, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.F_Combine = Conv2d(2 * channels + 1, channels, kernel_size=3, padding=1)
        self.res_block = nn.Sequential(ResnetBlock(channels))

    def compose(self, x: torch.Tensor, latent_mask: torch.Tensor) -> torch.Tensor:
        """Replace damaged patches of ``x`` by their best undamaged match (per batch item)."""
        p = self.patch_size
        b, _, h, w = x.shape
        share = F.unfold(latent_mask, p, stride=p).mean(dim=1)        # [B, L]
        damaged = share > _DAMAGED_PATCH_SHARE
        out = []
        for i in range(b):
            sel = damaged[i]
            if not bool(sel.any()) or bool(sel.all()):
                out.append(x[i])  # nothing to fill, or nothing to fill from
                continue
            patches = F.unfold(x[i:i + 1], p, stride=p)[0]             # [C*p*p, L]
            q_idx = sel.nonzero().squeeze(1)
            k_idx = (~sel).nonzero().squeeze(1)
            keys = patches[:, k_idx]
            best = _best_key_per_query(patches[:, q_idx].t(), keys.t())
            patches[:, q_idx] = keys[:, best]
            # positions beyond the last whole patch come back as zeros, as in the reference
            out.append(F.fold(patches[None], (h, w), p, stride=p)[0])
        return torch.stack(out)

    def forward(self, z: torch.Tensor, mask: torch.Tensor,
                runner: Runner | None = None) -> torch.Tensor:
        x = run_stack(self.res_block, z, runner)
        m = damaged_latent_mask(mask.to(x.dtype), x.shape[-2:])
        fused = torch.cat((z, self.compose(x, m), m), dim=1)
        del x
        return run_stack(self.F_Combine, fused, runner)
