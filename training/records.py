"""What a run writes besides weights: messages, metrics and sample grids (rank 0 only).

* messages go to stderr (above the progress bar) and to ``OUT/train.log``; :meth:`RunLog.once`
  says a thing once per run;
* metrics are JSON lines in ``OUT/metrics.jsonl``: ``{"step": N, "<loss>": value, ...}``;
* sample grids are PNGs in ``OUT/samples/``: one row per example, columns input | output |
  target.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

__all__ = ["RunLog", "MetricsWriter", "LossMeter", "write_grid", "to_unit_rgb"]


class RunLog:
    """Messages of a run; silent on ranks other than 0."""

    def __init__(self, out: Path | None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.file = out / "train.log" if (out is not None and enabled) else None
        self._said: set[str] = set()

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        tqdm.write(f"training: {message}", file=sys.stderr)
        if self.file is not None:
            with self.file.open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def once(self, message: str) -> None:
        """Say ``message`` unless it was said before in this run."""
        if message not in self._said:
            self._said.add(message)
            self(message)


class MetricsWriter:
    """Appends one JSON object per logged step to ``OUT/metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=False) + "\n")


def to_unit_rgb(x: torch.Tensor, signed: bool = True) -> torch.Tensor:
    """``[B, C, H, W]`` in [-1, 1] (or [0, 1] when ``signed`` is False), C in {1, 3} ->
    ``[B, 3, H, W]`` in [0, 1] on the CPU."""
    x = x.detach().float().cpu()
    if signed:
        x = (x + 1) / 2
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(0, 1)


def write_grid(columns: list[torch.Tensor], path: Path, pad: int = 2) -> None:
    """Write a PNG whose rows are examples and whose columns are ``columns``.

    Args:
        columns: ``[B, 3, H, W]`` tensors in [0, 1], all of one shape.
        path: the PNG to write (its folder is created).
    """
    b, _, h, w = columns[0].shape
    n = len(columns)
    canvas = torch.ones(3, b * h + (b + 1) * pad, n * w + (n + 1) * pad)
    for r in range(b):
        for c, col in enumerate(columns):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[:, top:top + h, left:left + w] = col[r]
    arr = np.rint(canvas.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path)


class LossMeter:
    """Means of each loss since the last :meth:`pop` (summed on the device, read once)."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for k, v in losses.items():
            v = v.detach().float()
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._count += 1

    def pop(self) -> dict[str, float]:
        """The means as floats; resets the meter."""
        n = max(1, self._count)
        out = {k: float(v) / n for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return out
