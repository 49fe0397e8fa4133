"""Processes of a run: single, or data-parallel under torchrun (one or many machines).

A run is distributed when torchrun's ``WORLD_SIZE`` is above one; ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` come from torchrun too. GPUs use NCCL (each process on
``cuda:LOCAL_RANK``), CPUs gloo. Only rank 0 writes files; every rank computes, and statistics
are averaged across ranks before rank 0 logs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .errors import TrainingError

__all__ = ["Context", "setup", "teardown", "wrap", "mean_across", "gather", "barrier"]


@dataclass(frozen=True)
class Context:
    """Where this process runs: rank, world size, local rank, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this process writes (rank 0)."""
        return self.rank == 0


def _device(flag: str, local_rank: int, distributed: bool) -> torch.device:
    if flag == "auto":
        flag = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(flag)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {flag}: CUDA is not available on this machine")
        if distributed or dev.index is None:
            dev = torch.device("cuda", local_rank if distributed else 0)
        torch.cuda.set_device(dev)
    return dev


def setup(device_flag: str) -> Context:
    """Read torchrun's environment, pick the device, join the process group if distributed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_flag, local_rank, world > 1)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world,
                                **({"device_id": device} if device.type == "cuda" else {}))
    return Context(rank=rank, world=world, local_rank=local_rank, device=device)


def teardown(ctx: Context) -> None:
    """Leave the process group (distributed runs)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: Context) -> nn.Module:
    """``DistributedDataParallel(module)`` in a distributed run, else ``module`` itself.

    Parameters are broadcast from rank 0 when wrapping, so every rank starts from the same
    weights; gradients are averaged during ``backward``.
    """
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def mean_across(values: dict[str, float], ctx: Context) -> dict[str, float]:
    """Average scalar statistics over the ranks (identity in a single process)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    t /= ctx.world
    return dict(zip(keys, t.tolist(), strict=True))


def gather(obj: Any, ctx: Context) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Context) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier(**({"device_ids": [ctx.device.index]} if ctx.device.type == "cuda"
                        else {}))
