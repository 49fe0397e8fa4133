"""How much memory a restoration needs, decided before any work.

A 12000x12000 scan in the quality mode would need one 64-channel float map of 36.9 GB at full
size, and several of them: it must be refused before a single layer runs, with a message that
says what does fit, not die with the allocator's message after minutes of work.

The model is linear in pixels, per mode and per choice of strip tiling (see
``docs/memory.md``): ``bytes = constant + bytes_per_pixel * working pixels``, plus the copies
made at the input's own size (the input, its resized copy, the result and the 8/16-bit output)
and the face stage when faces are enhanced. The coefficients are the measured peak working
memory of ``benchmarks/bench_memory.py`` (CPU, float32, synthetic weights of the published
shapes), rounded up; models' weights are not in them, since they are loaded before this check.

Only CPU memory is checked: on a GPU the same maps sit in device memory, whose use depends on
the convolution algorithms the driver picks, and a device out-of-memory error is reported per
photo instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InsufficientMemoryError

__all__ = ["MemoryModel", "WORKING_MEMORY", "FULL_SIZE_BYTES_PER_PIXEL", "FACE_BYTES",
           "estimate_bytes", "available_bytes", "largest_megapixels", "check_fits"]


@dataclass(frozen=True)
class MemoryModel:
    """Peak working memory of one stage-1 mode: ``constant + bytes_per_pixel * pixels``."""

    bytes_per_pixel: float
    constant: int

    def bytes(self, pixels: int) -> int:
        return int(self.constant + self.bytes_per_pixel * pixels)


#: ``(mode, tiled) -> model``: upper envelopes of ``benchmarks/bench_memory.py``'s measurements
#: (docs/memory.md has the measured points and the least-squares lines).
WORKING_MEMORY: dict[tuple[str, bool], MemoryModel] = {
    ("quality", False): MemoryModel(1000.0, 120 << 20),
    ("quality", True): MemoryModel(800.0, 400 << 20),
    ("scratch", False): MemoryModel(1000.0, 520 << 20),
    ("scratch", True): MemoryModel(1000.0, 420 << 20),
    ("hr", False): MemoryModel(1200.0, 440 << 20),
    ("hr", True): MemoryModel(1250.0, 440 << 20),
}

#: Bytes per pixel *of the input's size* outside the working maps: the float32 input and the
#: float32 result at the input's size, the integer copy written to disk (measured: 21 for an
#: 8-bit RGB photo restored at a smaller working size; 32 covers RGBA).
FULL_SIZE_BYTES_PER_PIXEL = 32

#: CPU activation budget of the face stage: faces go through the generator in chunks sized to
#: it (:func:`oldphoto_core.faces.enhance.faces_per_chunk`).
FACE_CPU_BUDGET_MB = 2048.0
#: The face stage's memory: its activation budget plus the crops and masks around them.
FACE_BYTES = int(FACE_CPU_BUDGET_MB + 256) << 20

#: Share of the available memory a restoration may plan to use: the rest absorbs the model's
#: error and what other processes allocate meanwhile.
USABLE_SHARE = 0.9


def _mode_models(mode: str) -> list[str]:
    """``auto`` may take either path after detection: plan for the larger."""
    return ["quality", "scratch"] if mode == "auto" else ["quality", "hr"] if mode == "auto_hr" \
        else [mode]


def estimate_bytes(mode: str, working_pixels: int, *, tiled: bool, input_pixels: int = 0,
                   faces: bool = False) -> int:
    """Peak bytes of a restoration beyond the loaded models.

    Args:
        mode: ``quality``, ``scratch``, ``hr``, ``auto`` or ``auto_hr``.
        working_pixels: pixels of the size the networks run at.
        tiled: whether the convolutional stacks run in strips.
        input_pixels: pixels of the input and output images (they may be larger than the
            working size with a downscaled working size).
        faces: whether the face stage runs.
    """
    work = max(WORKING_MEMORY[(m, tiled)].bytes(working_pixels) for m in _mode_models(mode))
    return work + FULL_SIZE_BYTES_PER_PIXEL * input_pixels + (FACE_BYTES if faces else 0)


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (containers), if it has one."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):
        root = Path("/sys/fs/cgroup")
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory this process can still allocate on ``device``; ``None`` when it is not checked.

    CPU: the operating system's available memory (``psutil``), bounded by a container's cgroup
    limit. ``$OLDPHOTO_AVAILABLE_MEMORY`` (bytes) overrides it, for tests and shared machines.
    """
    if torch.device(device).type != "cpu":
        return None
    override = os.environ.get("OLDPHOTO_AVAILABLE_MEMORY")
    if override:
        return int(float(override))
    import psutil
    room = int(psutil.virtual_memory().available)
    cgroup = _cgroup_room()
    return min(room, cgroup) if cgroup is not None else room


def _largest_pixels(mode: str, budget: float, tiled: bool) -> float:
    return min((budget - WORKING_MEMORY[(m, tiled)].constant)
               / WORKING_MEMORY[(m, tiled)].bytes_per_pixel for m in _mode_models(mode))


def largest_megapixels(mode: str, available: int, *, tiled_at: Callable[[int], bool],
                       input_pixels: int = 0, faces: bool = False) -> float:
    """The largest working size (megapixels) whose estimate fits ``available`` bytes.

    ``tiled_at(pixels)`` is the caller's tiling rule: the answer must hold at the size it
    names, whose tiling may differ from the input's.
    """
    budget = available * USABLE_SHARE - FULL_SIZE_BYTES_PER_PIXEL * input_pixels
    budget -= FACE_BYTES if faces else 0
    best = 0.0
    for tiled in (False, True):
        p = _largest_pixels(mode, budget, tiled)
        if p <= 0:
            continue
        if tiled_at(int(p)) == tiled:
            best = max(best, p)
            continue
        # the solution lies where the rule picks the other choice: the largest size this
        # choice is used at is the rule's boundary below p (bisection; the rule is a threshold)
        lo, hi = 0.0, p
        if tiled_at(0) != tiled:
            continue
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if tiled_at(int(mid)) == tiled else (lo, mid)
        best = max(best, lo)
    return best / 1e6


def check_fits(mode: str, size: tuple[int, int], working_size: tuple[int, int], *,
               tiled_at: Callable[[int], bool], device: torch.device | str = "cpu",
               faces: bool = False) -> None:
    """Raise before any work when a restoration would not fit in ``device``'s memory.

    Args:
        mode: ``quality``, ``scratch``, ``hr``, ``auto`` or ``auto_hr``.
        size: ``(H, W)`` of the input image.
        working_size: ``(h, w)`` the networks would run at.
        tiled_at: the tiling rule, ``pixels -> whether the stacks run in strips``.
        device: where the networks run.
        faces: whether the face stage runs.

    Raises:
        InsufficientMemoryError: with the estimate, what is available and the largest working
            size that fits (``max_megapixels``, CLI ``--max-megapixels``).
    """
    available = available_bytes(device)
    if available is None:
        return
    input_pixels = size[0] * size[1]
    working_pixels = working_size[0] * working_size[1]
    need = estimate_bytes(mode, working_pixels, tiled=tiled_at(working_pixels),
                          input_pixels=input_pixels, faces=faces)
    if need <= available * USABLE_SHARE:
        return
    fits = largest_megapixels(mode, available, tiled_at=tiled_at, input_pixels=input_pixels,
                              faces=faces)
    shown = math.floor(fits * 10) / 10
    h, w = size
    full_size = FULL_SIZE_BYTES_PER_PIXEL * input_pixels
    if shown >= 0.1:
        advice = (f"The largest working size that fits is about {shown:g} MP: restore at that "
                  f"size and upsample to {w}x{h} with max_megapixels={shown:g} (command line: "
                  f"--max-megapixels {shown:g}), or free memory and retry")
    else:
        advice = (f"Even the copies made at the photo's own size need about "
                  f"{full_size / 2**30:.1f} GiB, so no smaller working size helps: restore "
                  f"it on a machine with more memory, or reduce the scan first")
    raise InsufficientMemoryError(
        f"a {w}x{h} photo ({input_pixels / 1e6:.1f} MP, working size {working_size[1]}x"
        f"{working_size[0]}) in {mode} mode needs about {need / 2**30:.1f} GiB of memory, and "
        f"{available / 2**30:.1f} GiB is available. {advice} (memory model: docs/memory.md).",
        needed=need, available=available, max_megapixels=shown)
