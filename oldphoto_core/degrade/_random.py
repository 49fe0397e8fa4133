"""Seeded random streams and smooth noise fields (CPU, numpy) shared by the degradation ops.

Every random number of the synthesis is drawn on the CPU from a ``numpy.random.Generator``
whose seed is mixed by ``numpy.random.SeedSequence`` from ``(seed, batch index, stream)``.
Each kind of damage has its own stream, so that narrowing one range (or disabling one op) does
not move the random draws of the others, and batch items get independent damage.
"""

from __future__ import annotations

from enum import IntEnum

import cv2
import numpy as np
import torch

__all__ = ["Stream", "item_rng", "torch_generator", "uniform", "randint", "choice", "bernoulli",
           "smooth_noise"]


class Stream(IntEnum):
    """The independent random streams of one batch item."""

    AGING = 0
    SCRATCHES = 1
    CRACKS = 2
    DUST = 3
    CREASES = 4
    ELASTIC = 5
    BLEND = 6
    HOLES = 7
    PAPER = 8
    GLOBAL = 9
    UNSTRUCTURED = 10
    UNSTRUCTURED_NOISE = 11


def item_rng(seed: int, index: int, stream: Stream) -> np.random.Generator:
    """The generator of one stream of one batch item (``seed`` and ``index`` are >= 0)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index, int(stream)])))


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``rng`` (for large noise fields: torch draws
    normals faster than numpy)."""
    return torch.Generator().manual_seed(int(rng.integers(2**63)))


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A float drawn uniformly in ``[lo, hi]`` (exactly ``lo`` when ``lo == hi``)."""
    lo, hi = bounds
    return float(lo) if lo == hi else float(min(hi, lo + (hi - lo) * rng.random()))


def randint(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """An int drawn uniformly in ``[lo, hi]``, both inclusive."""
    lo, hi = bounds
    return int(rng.integers(lo, hi, endpoint=True))


def choice(rng: np.random.Generator, options: tuple):
    """One element of a non-empty tuple, uniformly."""
    return options[int(rng.integers(len(options)))]


def bernoulli(rng: np.random.Generator, p: float) -> bool:
    """True with probability ``p`` (always draws one number, so streams stay aligned)."""
    return bool(rng.random() < p)


def smooth_noise(rng: np.random.Generator, height: int, width: int, *, cells: float,
                 octaves: int = 1, persistence: float = 0.5) -> np.ndarray:
    """Smooth (fractal) value noise, zero mean, unit std.

    Random normal values on a coarse grid (``cells`` cells along the short side) are upsampled
    bicubically; ``octaves`` finer grids with amplitudes ``persistence**k`` are added.

    Args:
        rng: the generator to draw from.
        height, width: output size in pixels.
        cells: grid cells along the short side of the coarsest octave (> 0).
        octaves: number of octaves (>= 1).
        persistence: amplitude ratio between successive octaves.

    Returns:
        ``float32`` array ``[height, width]``.
    """
    short = min(height, width)
    # Work at a reduced size where the finest octave still has a few pixels per cell.
    finest = cells * 2 ** (octaves - 1)
    work_scale = min(1.0, max(8.0 * finest, 16.0) / short)
    wh, ww = max(2, round(height * work_scale)), max(2, round(width * work_scale))
    total = np.zeros((wh, ww), np.float32)
    for k in range(octaves):
        c = cells * 2**k
        gh = max(2, int(np.ceil(c * height / short)) + 1)
        gw = max(2, int(np.ceil(c * width / short)) + 1)
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        total += persistence**k * cv2.resize(grid, (ww, wh), interpolation=cv2.INTER_CUBIC)
    if (wh, ww) != (height, width):
        total = cv2.resize(total, (width, height), interpolation=cv2.INTER_LINEAR)
    std = float(total.std())
    return (total - float(total.mean())) / (std if std > 1e-8 else 1.0)
