"""The attention reports its progress to the installed callback, which can abort it."""

from __future__ import annotations

import pytest
import torch

from oldphoto_core.arch import partial_nonlocal
from oldphoto_core.arch.partial_nonlocal import partial_attention
from oldphoto_core.runtime.progress import report, reporting


def test_report_without_a_callback_is_silent() -> None:
    report(1, 2)


@pytest.mark.parametrize("path", ["fused", "chunked"])
def test_attention_reports_every_chunk_and_reaches_the_total(path, monkeypatch) -> None:
    if path == "chunked":
        monkeypatch.setattr(partial_nonlocal, "_fused_kernel", lambda queries: None)
    monkeypatch.setattr(partial_nonlocal, "FUSED_QUERY_ROWS", 7)
    g = torch.Generator().manual_seed(0)
    theta, phi, v = torch.randn(3, 2, 8, 50, generator=g)
    weight = torch.ones(2, 50)
    seen = []
    with reporting(lambda done, total: seen.append((done, total))):
        partial_attention(theta, phi, v, weight, chunk_elements=50 * 7)
    assert seen[0] == (0, 100) and seen[-1] == (100, 100)
    assert len(seen) == 1 + 2 * 8  # 7 queries per chunk: 8 chunks per item
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_raising_callback_aborts_the_attention() -> None:
    class Stop(Exception):
        pass

    def stop_after_first(done: int, total: int) -> None:
        if done:
            raise Stop

    x = torch.randn(1, 4, 30)
    with reporting(stop_after_first), pytest.raises(Stop):
        partial_attention(x, x, x, torch.ones(1, 30), chunk_elements=30 * 5)


@pytest.mark.parametrize("path", ["fused", "chunked"])
def test_responsive_mode_reports_in_small_steps_with_the_same_result(path, monkeypatch) -> None:
    """ComfyUI asks for small steps (Cancel within a second); the CLI keeps large calls."""
    from oldphoto_core.runtime.progress import is_responsive, responsive
    if path == "chunked":
        monkeypatch.setattr(partial_nonlocal, "_fused_kernel", lambda queries: None)
    keys = 400
    monkeypatch.setattr(partial_nonlocal, "CPU_CALL_LOGITS", 128 * keys)  # 128 queries a call
    g = torch.Generator().manual_seed(1)
    theta, phi, v = torch.randn(3, 1, 8, keys, generator=g)
    weight = (torch.rand(1, keys, generator=g) > 0.2).float()
    runs = {}
    for mode in ("plain", "responsive"):
        seen = []
        ctx = responsive() if mode == "responsive" else reporting(None)
        with ctx, reporting(lambda done, total, seen=seen: seen.append(done)):
            assert is_responsive() == (mode == "responsive")
            runs[mode] = (partial_attention(theta, phi, v, weight), len(seen) - 1)
    assert runs["plain"][1] == 1 and runs["responsive"][1] == 4  # 400 queries: 1 vs 4 calls
    assert not is_responsive()
    if path == "fused":  # whole 64-row blocks per call: each query is computed the same way
        torch.testing.assert_close(runs["responsive"][0], runs["plain"][0], rtol=0, atol=0)
    else:  # matrix products of other heights may round differently: the attention's bound
        from numeric_bounds import attention_bound, check_within
        check_within(runs["responsive"][0], runs["plain"][0],
                     2 * attention_bound(theta, phi, v, weight), "chunked, small steps")
