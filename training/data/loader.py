"""The DataLoader of a run: worker processes, one batch per step, starting at any step."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .order import StepBatchSampler

__all__ = ["make_loader"]


def _worker_init(_worker_id: int) -> None:
    """One PyTorch thread per worker: the workers already run in parallel, and nested pools
    would oversubscribe the cores the training step needs.

    OpenCV's pool is left alone: ``cv2.setNumThreads`` in a forked worker deadlocks when the
    parent process had started OpenCV's threads (it waits on the parent's condition variables).
    """
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, sampler: StepBatchSampler, *, workers: int,
                pin_memory: bool = False) -> DataLoader:
    """Batches of ``dataset`` in the order of ``sampler``, made by ``workers`` processes.

    The loader gets a torch generator of its own: a DataLoader draws its workers' base seed
    from the global RNG when iterated, which would shift the training RNG of a resumed run
    (the samples themselves are seeded by :mod:`training.data.order`, not by workers).
    """
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                      worker_init_fn=_worker_init if workers else None,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(0),
                      prefetch_factor=2 if workers else None,
                      persistent_workers=False)
