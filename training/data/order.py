"""Data order and per-sample randomness as pure functions of the seed and a sample counter.

Sample ``k`` (a global counter over the whole run, across processes) is photo
``permutation(seed, epoch)[k mod N]`` of epoch ``k // N``, and everything random about it (crop,
flip, damage) is drawn from streams seeded by ``(seed, stream, k)``. So the data a step sees
depends on nothing but the seed and the step: not on the number of loader workers, not on
which worker made it, and not on whether the run was interrupted. Resuming needs only the step
(:class:`StepBatchSampler` starts there).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["epoch_permutation", "sample_rng", "sample_seed", "StepBatchSampler", "Stream"]


class Stream:
    """Stream ids: independent random streams of one sample."""

    ORDER = 0
    CROP = 1
    DAMAGE = 2
    PICK = 3
    SCALE = 4
    OLD = 5
    PAIR = 6
    PREVIEW = 1 << 20  # added to the seed for the fixed preview batch


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of ``n`` photos in ``epoch`` (a permutation of ``range(n)``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, Stream.ORDER, epoch]))
    return rng.permutation(n)


def sample_rng(seed: int, stream: int, k: int) -> np.random.Generator:
    """The generator of one stream of sample ``k``."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, k]))


def sample_seed(seed: int, stream: int, k: int) -> int:
    """A non-negative 31-bit int seed for APIs that take one (e.g. ``degrade``)."""
    return int(np.random.SeedSequence([seed, stream, k]).generate_state(1)[0] >> 1)


class StepBatchSampler(Sampler[list[int]]):
    """Batches of global sample counters, one per step, for one process.

    Step ``s`` of process ``rank`` (of ``world``) gets counters
    ``base_sample + ((s - base_step) * world + rank) * batch + i`` for ``i < batch``; the
    processes of a step share no sample. A resumed run passes the step and the counter it
    reached, so the sequence continues even if the batch size or process count changed.
    """

    def __init__(self, *, start_step: int, stop_step: int, batch: int, world: int = 1,
                 rank: int = 0, base_step: int = 0, base_sample: int = 0) -> None:
        self.start_step, self.stop_step = start_step, stop_step
        self.batch, self.world, self.rank = batch, world, rank
        self.base_step, self.base_sample = base_step, base_sample

    def counters(self, step: int) -> list[int]:
        first = self.base_sample + ((step - self.base_step) * self.world + self.rank) * self.batch
        return list(range(first, first + self.batch))

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.stop_step):
            yield self.counters(step)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)
