"""The resume state: everything needed to continue a run bit for bit, safely loadable.

The state holds unwrapped networks (generator and discriminators), optimisers, schedulers, the
step, the data position, the configuration and every RNG of every rank (Python, NumPy, torch
CPU, CUDA). It contains only tensors and plain containers, so it is read with
``torch.load(weights_only=True)``; it is written to a temporary file and renamed, so an
interrupted write never leaves a broken state behind.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import TrainingError

__all__ = ["FORMAT", "capture_rng", "restore_rng", "save_state", "load_state"]

FORMAT = 1


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values."""
    py = random.getstate()
    npy = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"key": torch.from_numpy(npy["state"]["key"].astype(np.int64)),
                  "pos": int(npy["state"]["pos"]), "has_gauss": int(npy["has_gauss"]),
                  "gauss": float(npy["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` took."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_state(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically (temporary file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (``weights_only=True``).

    Raises:
        TrainingError: missing, unreadable, or of another format.
    """
    if not path.is_file():
        raise TrainingError(f"--resume: no resume state at {path} (a run writes it every "
                            f"--save-every steps and at its end)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors, truncation
        raise TrainingError(f"--resume: cannot read {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainingError(f"--resume: {path} is not a resume state of this version "
                            f"(format {state.get('format') if isinstance(state, dict) else '?'},"
                            f" expected {FORMAT})")
    return state
