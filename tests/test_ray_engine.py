"""``--engine ray`` on a local two-CPU Ray cluster, with a tiny model set."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'oldphoto[ray]'")

from oldphoto_core.cli.commands import build_parser, main  # noqa: E402
from oldphoto_core.cli.manifest import last_rows  # noqa: E402
from oldphoto_core.cli.ray_engine import RestoreWorker, restore_rows  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # one thread per worker, inherited from the environment ray.init starts the cluster in:
    # a runtime_env would do the same but keep Ray from using its prestarted workers, and
    # every actor would start a fresh one (about 1.5 s more each, a dozen times here)
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if saved is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    # ray.data before any test runs: pytest then attaches its log capture to the
    # non-propagating ray.data logger, and the records it keeps hold failed tasks' errors
    # (and, through them, their actors) as an application's handler may; whatever the
    # test order, the engine must not depend on their release
    importlib.import_module("ray.data")
    yield
    ray.shutdown()


@pytest.fixture
def photos(tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a", (40, 48)), ("b", (36, 36)), ("crash", (32, 40))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(src / f"{name}.png")
    Image.fromarray(rng.integers(0, 256, (24, 28), dtype=np.uint8)).save(src / "gray.png")
    (src / "broken.png").write_bytes(b"not an image")
    return src


@pytest.fixture
def models(tmp_path) -> Path:
    import model_sets
    model_sets.write_tiny_set(tmp_path / "set")
    return tmp_path / "set"


def test_ray_restores_like_the_local_engine_and_resumes(cluster, photos, models, tmp_path,
                                                         capsys):
    from ray.data import DataContext
    ctx = DataContext.get_current()
    settings = ctx.max_errored_blocks, ctx.enable_progress_bars
    common = [str(photos), "--models", str(models), "--device", "cpu", "--scratch", "on"]
    assert main(["restore", *common, "-o", str(tmp_path / "local")]) == 1
    assert main(["restore", *common, "-o", str(tmp_path / "ray"), "--engine", "ray",
                 "--workers", "2"]) == 1                      # broken.png fails, the rest goes on
    # the engine's Ray Data settings lasted as long as its passes
    assert (ctx.max_errored_blocks, ctx.enable_progress_bars) == settings
    rows = last_rows(tmp_path / "ray" / "manifest.jsonl")
    status = {Path(k).name: r["status"] for k, r in rows.items()}
    assert status == {"a.png": "restored", "b.png": "restored", "crash.png": "restored",
                      "gray.png": "restored", "broken.png": "failed"}
    assert rows[str((photos / "broken.png").resolve())]["error"]
    for name in ("a.png", "b.png", "crash.png", "gray.png"):
        local = np.asarray(Image.open(tmp_path / "local" / name), dtype=np.int16)
        far = np.asarray(Image.open(tmp_path / "ray" / name), dtype=np.int16)
        assert local.shape == far.shape                     # same naming, size, grey stays grey
        assert np.abs(local - far).max() <= 1
    capsys.readouterr()
    (photos / "broken.png").unlink()
    assert main(["restore", *common, "-o", str(tmp_path / "ray"), "--engine", "ray",
                 "--batch-size", "3"]) == 0
    assert "restored 0, skipped 4" in capsys.readouterr().out


class CrashOnce(RestoreWorker):
    """Kills its worker process the first time it meets ``crash.png`` (a marker file beside
    it remembers), as an out-of-memory kill would."""

    def __call__(self, batch):
        src = Path(str(batch["input"][0]))
        marker = src.with_suffix(".crashed")
        if src.name == "crash.png" and not marker.exists():
            marker.write_text("once")
            os._exit(1)
        return super().__call__(batch)


def test_a_worker_that_dies_is_replaced_and_its_photo_retried(cluster, photos, models, tmp_path):
    import sys

    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    args = build_parser().parse_args(["restore", str(photos), "-o", str(tmp_path / "o"),
                                      "--models", str(models), "--device", "cpu",
                                      "--faces", "off", "--workers", "1"])
    (tmp_path / "o").mkdir()
    jobs = [(p, tmp_path / "o" / f"{p.stem}.png") for p in sorted(photos.glob("*.png"))
            if p.name != "broken.png"]
    rows = {Path(r.input).name: r for r in restore_rows(args, jobs, worker_cls=CrashOnce)}
    assert (photos / "crash.crashed").exists()              # it did die once
    assert {n: r.status for n, r in rows.items()} == {n: "restored" for n in
                                                      ("a.png", "b.png", "crash.png", "gray.png")}


class CrashAlways(RestoreWorker):
    """Kills its worker process every time it meets ``crash.png`` (a photo that always runs
    out of memory)."""

    def __call__(self, batch):
        if any(Path(str(p)).name == "crash.png" for p in batch["input"]):
            os._exit(1)
        return super().__call__(batch)


def _give_up(signum, frame):
    raise TimeoutError("the job did not end")


def test_a_photo_that_always_kills_its_worker_fails_alone(cluster, photos, models, tmp_path,
                                                          monkeypatch, capsys):
    """All photos in one block: the block dies twice, then its photos go one by one, and only
    the culprit is recorded as failed; the others are restored (those written by the lost
    attempts count as restored, not skipped). The job ends, with its summary and status 1:
    the second pass no longer waits forever for the CPUs of the first pass's worker, which Ray
    restarted after its last death (the engine ends each pass's workers)."""
    import functools

    import cloudpickle

    import oldphoto_core.cli.ray_engine as engine
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(engine, "BLOCKS_PER_WORKER", 1)
    monkeypatch.setattr(engine, "restore_rows",
                        functools.partial(engine.restore_rows, worker_cls=CrashAlways))
    (photos / "broken.png").unlink()
    assert engine.block_photos(4, 1, 1) == 4                 # one block of four
    out = tmp_path / "o"
    previous = signal.signal(signal.SIGALRM, _give_up)
    signal.alarm(150)                  # a failure, not a hung suite (it takes ~25 s on 2 CPUs)
    try:
        status = main(["restore", str(photos), "-o", str(out), "--models", str(models),
                       "--device", "cpu", "--faces", "off", "--engine", "ray", "--workers", "1"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert status == 1
    report = capsys.readouterr().out
    assert "restored 3, skipped 0" in report and "failed 1" in report
    rows = {Path(k).name: r for k, r in last_rows(out / "manifest.jsonl").items()}
    assert {n: r["status"] for n, r in rows.items()} == {
        "a.png": "restored", "b.png": "restored", "crash.png": "failed", "gray.png": "restored"}
    assert "died 2 times" in rows["crash.png"]["error"]
    assert not (out / "crash.png").exists()


def test_blocks_are_sized_for_balance_and_a_flat_driver():
    from oldphoto_core.cli.ray_engine import MAX_BLOCK_PHOTOS, block_photos
    assert block_photos(100, 2, 1) == 7                  # ~8 blocks per worker
    assert block_photos(10_000, 2, 1) == 625
    assert block_photos(10**7, 100, 1) == MAX_BLOCK_PHOTOS
    assert block_photos(3, 4, 1) == 1
    assert block_photos(3, 4, 5) == 5                    # at least one task's worth


def test_importing_the_package_never_imports_ray():
    code = ("import sys, oldphoto_core, oldphoto_core.cli.commands, oldphoto_core.cli.restore; "
            "raise SystemExit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_python_api_restores_a_dataset_of_images_or_paths(cluster, photos, models):
    from oldphoto_core.cli.ray_engine import restore_dataset
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
              rng.integers(0, 65536, (20, 20, 3), dtype=np.uint16)]
    out = restore_dataset(ray.data.from_items([{"image": a, "id": i} for i, a in
                                               enumerate(arrays)]),
                          models=str(models), scratch="off", workers=1).take_all()
    by_id = {int(r["id"]): r for r in out}
    for i, a in enumerate(arrays):
        assert by_id[i]["status"] == "restored"
        assert by_id[i]["restored"].shape == a.shape and by_id[i]["restored"].dtype == a.dtype
    paths = [{"path": str(photos / n)} for n in ("a.png", "broken.png")]
    rows = {Path(r["path"]).name: r for r in restore_dataset(
        ray.data.from_items(paths), models=str(models), scratch="on", workers=1).take_all()}
    assert rows["a.png"]["status"] == "restored" and rows["a.png"]["restored"].shape == (40, 48, 3)
    assert rows["broken.png"]["status"] == "failed" and "broken.png" in rows["broken.png"]["error"]


def test_uri_inputs_and_outputs(cluster, photos, models, tmp_path, capsys):
    """``file://`` URIs go through pyarrow's filesystem layer as ``s3://`` ones would."""
    (photos / "broken.png").unlink()
    (photos / ".hidden.png").write_bytes(b"x")
    out_uri = f"file://{tmp_path}/remote_out"
    args = ["restore", f"file://{photos}", "-o", out_uri, "--models", str(models),
            "--device", "cpu", "--scratch", "off"]
    assert main(args) == 2                                   # the local engine refuses URIs
    assert "--engine ray" in capsys.readouterr().err
    assert main([*args, "--engine", "ray", "--workers", "1"]) == 0
    report = capsys.readouterr().out
    assert "restored 4" in report and "not taken 1" in report and ".hidden.png" in report
    assert sorted(p.name for p in (tmp_path / "remote_out").iterdir()) == [
        "a.png", "b.png", "crash.png", "gray.png", "manifest.jsonl"]
    assert Image.open(tmp_path / "remote_out" / "gray.png").mode == "L"   # grey stays grey
    assert main([*args, "--engine", "ray", "--workers", "1"]) == 0       # resume, appended
    assert "restored 0, skipped 4" in capsys.readouterr().out
    rows = last_rows(tmp_path / "remote_out" / "manifest.jsonl")
    assert {r["status"] for r in rows.values()} == {"skipped"} and len(rows) == 4
    assert all(k.startswith("file://") for k in rows)
