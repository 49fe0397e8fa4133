"""The detection threshold a recipe's model set asks for: the best F1 on its own photos.

Why: the paper's detector loss weights scratch pixels by the class balance (eq. 12), so the
trained detector reads high wherever a scratch is possible, and the reference's threshold of
0.4, right for the published detector, marks far too much with ours (a third of the pixels for
3 % of damage, measured). A detector painted over that much of a photo ruins the scratch path.
The threshold is chosen on the recipe's *training* photos (never the held-out ones the quality
benchmark scores), damaged by the paper's recipe at fixed seeds, and scored the way
restoration runs the detector: the whole photo at a long side of at most ``max_side``, 8-bit,
brought to the detector's working size, against the damage that still shows there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oldphoto_core.degrade import degrade
from oldphoto_core.loading import load_model
from oldphoto_core.stages.scratch import scratch_probability

from ..data.damage import DETECTABLE
from ..data.images import shrink_mask
from .photos import fit_max_side

__all__ = ["THRESHOLDS", "detector_threshold"]

#: the candidate thresholds, 0.10 to 0.95
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(2, 20))


@torch.inference_mode()
def detector_threshold(detector: Path, photos: Sequence[Path], seeds: Sequence[int] = (1000, 1001),
                       max_side: int = 512) -> tuple[float, float]:
    """The threshold of :data:`THRESHOLDS` with the best F1 over ``photos`` x ``seeds``.

    Returns:
        ``(threshold, F1 at it)``, F1 pooled over every pixel of every photo.
    """
    net = load_model(detector, expect="scratch_detector")
    counts = np.zeros((len(THRESHOLDS), 3))  # true positives, false positives, false negatives
    cuts = torch.tensor(THRESHOLDS).view(-1, 1)
    for path in photos:
        # 8-bit and antialiased at the benchmark's size, as the benchmark brings its photos
        rgb = fit_max_side(np.asarray(Image.open(path).convert("RGB")), max_side)
        clean = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
        for seed in seeds:
            out = degrade(clean, seed=seed, config=DETECTABLE)
            damaged = out.image.mul(255).round().div(255)  # a scan of the damaged print
            prob = scratch_probability(damaged, net)
            truth = shrink_mask(out.mask, prob.shape[-2:]).flatten() > 0.5
            found = prob.flatten()[None] >= cuts
            counts[:, 0] += (found & truth).sum(1).numpy()
            counts[:, 1] += (found & ~truth).sum(1).numpy()
            counts[:, 2] += (~found & truth).sum(1).numpy()
    f1 = 2 * counts[:, 0] / np.maximum(2 * counts[:, 0] + counts[:, 1] + counts[:, 2], 1)
    best = int(f1.argmax())
    return THRESHOLDS[best], float(f1[best])
