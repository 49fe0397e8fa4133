"""The memory model: a refusal is decided before any work and its advice holds."""

from __future__ import annotations

import pytest
import torch

from oldphoto_core import InsufficientMemoryError
from oldphoto_core.runtime.memory import (
    USABLE_SHARE,
    available_bytes,
    check_fits,
    estimate_bytes,
    largest_megapixels,
)


def _tiles_from(megapixels: float):
    return lambda pixels: pixels >= megapixels * 1e6


@pytest.mark.parametrize("mode", ["quality", "scratch", "hr", "auto", "auto_hr"])
@pytest.mark.parametrize("available_gib", [1, 4, 24])
def test_largest_size_fits_and_a_little_more_does_not(mode: str, available_gib: int) -> None:
    available = available_gib * 2**30
    input_pixels = 12000 * 12000 if available_gib == 24 else 0
    rule = _tiles_from(2.0)
    mp = largest_megapixels(mode, available, tiled_at=rule, input_pixels=input_pixels)
    assert mp > 0
    budget = available * USABLE_SHARE

    def need(pixels: int) -> int:
        return estimate_bytes(mode, pixels, tiled=rule(pixels), input_pixels=input_pixels)

    assert need(int(mp * 1e6)) <= budget
    # just above the answer nothing fits, whichever tiling the rule picks there
    assert all(need(int(mp * 1e6 * 1.01)) > budget or rule(int(mp * 1e6 * 1.01)) != rule(p)
               for p in [int(mp * 1e6)])


def test_refusal_names_sizes_and_the_option(monkeypatch) -> None:
    monkeypatch.setenv("OLDPHOTO_AVAILABLE_MEMORY", str(2 * 2**30))
    with pytest.raises(InsufficientMemoryError) as info:
        check_fits("quality", (3000, 4000), (3000, 4000), tiled_at=_tiles_from(2.0))
    err = info.value
    assert err.available == 2 * 2**30 and err.needed > err.available
    assert "4000x3000" in str(err) and f"--max-megapixels {err.max_megapixels:g}" in str(err)
    check_fits("quality", (3000, 4000), (3000, 4000), tiled_at=_tiles_from(2.0),
               device="meta")  # devices other than the CPU are not checked up front


def test_available_memory_is_the_systems_without_override(monkeypatch) -> None:
    import psutil
    monkeypatch.delenv("OLDPHOTO_AVAILABLE_MEMORY", raising=False)
    assert 0 < available_bytes("cpu") <= psutil.virtual_memory().total
    assert available_bytes(torch.device("meta")) is None
