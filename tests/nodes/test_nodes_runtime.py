"""Layout conversion, device moves, progress and interruption (ComfyUI mocked)."""

from __future__ import annotations

import pytest
import torch
from oldphoto_pack.nodes import comfy_compat
from oldphoto_pack.nodes.convert import (
    fit_mask,
    image_to_nchw,
    mask_to_nchw,
    nchw_to_image,
    nchw_to_mask,
    to_rgb,
)
from oldphoto_pack.nodes.runtime import (
    Network,
    Steps,
    chunk_size,
    models_on_device,
    run_in_chunks,
)

from oldphoto_core.errors import InputError


def test_image_round_trip_is_exact_and_leaves_input_alone(images):
    before = images.clone()
    x = image_to_nchw(images)
    assert x.shape == (2, 3, 48, 40)
    back = nchw_to_image(x * 1.0)
    assert back.shape == images.shape and back.is_contiguous()
    assert torch.equal(back, images) and torch.equal(images, before)


@pytest.mark.parametrize("bad", [torch.rand(48, 40, 3), torch.rand(1, 48, 40, 2),
                                 torch.rand(0, 8, 8, 3), "image"])
def test_image_errors(bad):
    with pytest.raises(InputError, match="image"):
        image_to_nchw(bad)


def test_mask_layouts():
    assert mask_to_nchw(torch.ones(5, 6)).shape == (1, 1, 5, 6)
    assert mask_to_nchw(torch.ones(2, 5, 6)).shape == (2, 1, 5, 6)
    assert mask_to_nchw(torch.ones(2, 1, 5, 6)).shape == (2, 1, 5, 6)
    assert nchw_to_mask(torch.full((2, 1, 5, 6), 2.0)).max() == 1.0
    with pytest.raises(InputError, match="MASK"):
        mask_to_nchw(torch.ones(2, 3, 5, 6))


def test_fit_mask_resizes_with_a_warning_and_broadcasts(oldphoto_logs):
    m = torch.zeros(1, 1, 12, 10)
    m[..., 3:6, :] = 1
    out = fit_mask(m, 3, (24, 20), node="Test")
    assert out.shape == (3, 1, 24, 20)
    assert set(out.unique().tolist()) == {0.0, 1.0}  # nearest: stays binary
    assert "resizing" in oldphoto_logs.text and "Test" in oldphoto_logs.text
    oldphoto_logs.clear()
    same = fit_mask(torch.zeros(3, 1, 24, 20), 3, (24, 20), node="Test")
    assert same.shape == (3, 1, 24, 20) and "resizing" not in oldphoto_logs.text
    with pytest.raises(InputError, match="batch has 2"):
        fit_mask(torch.zeros(2, 1, 24, 20), 3, (24, 20), node="Test")


def test_to_rgb(oldphoto_logs):
    assert to_rgb(torch.rand(1, 1, 4, 4), node="T").shape == (1, 3, 4, 4)
    rgba = torch.rand(1, 4, 4, 4)
    assert torch.equal(to_rgb(rgba, node="T"), rgba[:, :3])
    assert "alpha" in oldphoto_logs.text


class RecordingModule(torch.nn.Linear):
    """Records device moves (a real model cannot go to a device this machine lacks)."""

    def __init__(self):
        super().__init__(4, 4)
        self.moves = []

    def to(self, *args, **kwargs):
        self.moves.append(torch.device(args[0] if args else kwargs["device"]).type)
        return self


class FakeDescriptor:
    def __init__(self):
        self.model = RecordingModule()


def _network() -> Network:
    return Network(FakeDescriptor())


@pytest.fixture
def fake_gpu(monkeypatch):
    calls = {"free": [], "empty": 0}
    monkeypatch.setattr(comfy_compat, "get_torch_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(comfy_compat, "free_memory", lambda n, d: calls["free"].append(n))

    def empty():
        calls["empty"] += 1

    monkeypatch.setattr(comfy_compat, "soft_empty_cache", empty)
    return calls


def test_models_go_to_the_device_only_while_used(fake_gpu):
    """Without ComfyUI (today's behaviour): moved for the run, back to the CPU after it."""
    a, b = _network(), _network()
    with models_on_device(a, b, a, None) as device:
        assert device.type == "cuda"
        assert a.patcher.model.moves == ["cuda"] and b.patcher.model.moves == ["cuda"]
    assert a.patcher.model.moves == ["cuda", "cpu"] and b.patcher.model.moves == ["cuda", "cpu"]
    assert fake_gpu["free"] and fake_gpu["free"][0] > 2 * 20 * 4  # weights + working memory
    assert fake_gpu["empty"] == 1


def test_models_come_back_after_an_out_of_memory_error(fake_gpu):
    a = _network()
    with pytest.raises(torch.OutOfMemoryError), models_on_device(a):
        raise torch.OutOfMemoryError("CUDA out of memory (forced)")
    assert a.patcher.model.moves == ["cuda", "cpu"]


def test_chunks_are_what_the_free_memory_holds(monkeypatch):
    monkeypatch.setattr(comfy_compat, "free_bytes", lambda device: 1000)
    assert chunk_size(torch.device("cpu"), 300, 10) == 3  # 90 % of the free memory
    assert chunk_size(torch.device("cpu"), 300, 2) == 2
    assert chunk_size(torch.device("cpu"), 5000, 10) == 1  # at least one
    monkeypatch.setattr(comfy_compat, "free_bytes", lambda device: None)
    assert chunk_size(torch.device("cpu"), 1, 10) == 1  # unknown: one at a time


def _oom_schedule(fails):
    """A chunk worker recording ``(start, stop, tile)`` that runs out of device memory on the
    calls whose numbers are in ``fails``."""
    calls = []

    def work(start, stop, tile):
        calls.append((start, stop, tile))
        if len(calls) in fails:
            raise torch.OutOfMemoryError("CUDA out of memory (forced)")
        return list(range(start, stop))
    return work, calls


def test_out_of_memory_runs_the_chunk_again_in_strips_then_smaller(monkeypatch, progress,
                                                                    oldphoto_logs):
    monkeypatch.setattr(comfy_compat, "free_bytes", lambda device: 10**6)
    work, calls = _oom_schedule({1, 2})
    out = run_in_chunks(5, work, steps=Steps(5), device=torch.device("cpu"), per_item=4 * 10**5)
    assert calls == [(0, 2, False), (0, 2, True), (0, 1, True), (1, 2, True), (2, 3, True),
                     (3, 4, True), (4, 5, True)]
    assert [x for chunk in out for x in chunk] == [0, 1, 2, 3, 4]
    assert progress[0].updates == [1, 2, 3, 4, 5]
    assert "in strips" in oldphoto_logs.text and "1 image(s) at a time" in oldphoto_logs.text


def test_out_of_memory_of_one_image_in_strips_is_raised(monkeypatch):
    monkeypatch.setattr(comfy_compat, "free_bytes", lambda device: 10**6)
    work, calls = _oom_schedule({1, 2})
    with pytest.raises(torch.OutOfMemoryError):
        run_in_chunks(1, work, steps=Steps(1), device=torch.device("cpu"), per_item=1)
    assert calls == [(0, 1, False), (0, 1, True)]
    work, calls = _oom_schedule({1, 2})  # a network that cannot run in strips: halves only
    with pytest.raises(torch.OutOfMemoryError):
        run_in_chunks(2, work, steps=Steps(2), device=torch.device("cpu"), per_item=1,
                      can_tile=False)
    assert calls == [(0, 2, False), (0, 1, False)]


def test_other_errors_are_not_retried(monkeypatch):
    calls = []

    def work(start, stop, tile):
        calls.append(tile)
        raise RuntimeError("DefaultCPUAllocator: not enough memory")  # not a device OOM
    with pytest.raises(RuntimeError):
        run_in_chunks(1, work, steps=Steps(1), device=torch.device("cpu"), per_item=1)
    assert calls == [False]


def test_steps_progress_and_interrupt(progress):
    steps = Steps(3)
    steps.check()
    steps.advance()
    steps.absolute(2, 3)
    assert progress[0].total == 3 and progress[0].updates == [1, 2]
    comfy_compat.request_interrupt()
    with pytest.raises(comfy_compat.Interrupted):
        steps.check()
    steps.check()  # the flag is consumed, as ComfyUI's


def test_plain_python_folders(monkeypatch, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.pth").write_bytes(b"x")
    (tmp_path / "b.txt").write_text("x")
    monkeypatch.setenv("OLDPHOTO_MODELS", str(tmp_path))
    assert comfy_compat.model_folders() == [str(tmp_path)]
    assert comfy_compat.list_models() == ["sub/a.pth"]
    assert comfy_compat.full_model_path("sub/a.pth") == str(tmp_path / "sub" / "a.pth")
    (tmp_path.parent / "outside.pth").write_bytes(b"x")
    assert comfy_compat.full_model_path("../outside.pth") is None  # never leaves the folder
    monkeypatch.delenv("OLDPHOTO_MODELS")
    assert comfy_compat.model_folders() == ["models/oldphoto"]


def test_steps_within_an_item_shows_the_fraction_and_can_be_cancelled(progress):
    steps = Steps(2)
    steps.advance()
    steps.within(250, 1000)
    bar = progress[0]
    assert (bar.current, bar.total) == (1250, 2000)
    steps.advance()
    assert (bar.current, bar.total) == (2, 2)
    comfy_compat.request_interrupt()
    with pytest.raises(comfy_compat.Interrupted):
        steps.within(1, 10)


def test_freed_host_memory_goes_back_after_every_run(monkeypatch) -> None:
    """A long-running server must not keep a past run's peak as resident memory."""
    from oldphoto_pack.nodes import runtime
    trims = []
    monkeypatch.setattr(runtime, "_malloc_trim", lambda pad: trims.append(pad) or 1)
    with runtime.models_on_device():
        pass
    assert trims == [0]
    with pytest.raises(RuntimeError), runtime.models_on_device():
        raise RuntimeError("a failing run releases too")
    assert trims == [0, 0]
    monkeypatch.setattr(runtime, "_malloc_trim", None)  # the real lookup works here
    runtime.release_freed_host_memory()
