"""``oldphoto restore --engine ray``: the same restoration on a Ray cluster.

The driver only lists paths (it never decodes an image). Ray Data streams ``(input, output)``
rows through a pool of actors, ``--batch-size`` photos per call; each actor builds one
:class:`~oldphoto_core.Restorer` (models loaded once per worker, on its GPU when it has one)
and runs exactly what the local engine runs for a photo
(:func:`~oldphoto_core.cli.restore.restore_job`), so options, naming, bit depth, grey and alpha
handling are the same. Results come back as manifest rows, which the driver
writes to ``OUT/manifest.jsonl`` as they arrive.

Failures are data: a photo that raises becomes a ``failed`` row (a worker never raises, so
a block that does not come back was lost with its worker). A worker that dies (out of memory,
killed) is restarted by Ray and its task retried once; a photo that kills its worker twice is
recorded as failed, and the job goes on.

The driver's memory stays flat as archives grow: Ray Data keeps about 7 KB of bookkeeping per
*block* in the driver (measured: 10,000 one-photo blocks cost 67 MB), so the photos travel in
blocks of up to :data:`MAX_BLOCK_PHOTOS` (about eight per worker for load balance), and the
driver remembers which photos came back in one byte each, not their rows. A block whose worker
died twice is not given up wholesale: its photos that did not come back go through a second
pass one photo per block, and one task per worker at a time (a task queued on a worker that
dies loses an attempt too), which pins the failure on the photo that causes it. Outputs that an
attempt lost with its worker had already written are recognised by their time (written after
the run started) and recorded as restored, not as skipped. Each pass ends its workers when
it ends (:class:`PassWorkers`): the second pass would otherwise wait, forever, for the CPUs of
a worker that Ray restarted after its last death.

Importing :mod:`oldphoto_core` never imports Ray; this module is loaded only for
``--engine ray`` (``pip install "oldphoto[ray]"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import OldPhotoError
from . import remote_paths
from .manifest import ManifestRow, ManifestWriter, Tally
from .remote_paths import is_uri

__all__ = ["RestoreWorker", "run_jobs", "restore_rows", "restore_dataset", "restore_options"]

#: Attempts per photo: the first and one retry after its worker died (Ray's
#: ``max_task_retries`` is ``ATTEMPTS - 1``; the failed row's error quotes this number).
ATTEMPTS = 2
#: Most photos in one Ray Data block (see the module's docstring).
MAX_BLOCK_PHOTOS = 1000
#: Blocks per worker aimed at, so that workers finishing early find more work.
BLOCKS_PER_WORKER = 8


def block_photos(photos: int, workers: int, per_task: int) -> int:
    """Photos per block: about :data:`BLOCKS_PER_WORKER` blocks per worker, at most
    :data:`MAX_BLOCK_PHOTOS`, at least one task's worth."""
    even = -(-photos // max(1, BLOCKS_PER_WORKER * workers))
    return max(per_task, min(MAX_BLOCK_PHOTOS, even), 1)


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise OldPhotoError("--engine ray needs Ray: pip install \"oldphoto[ray]\"") from exc
    return ray


class RestoreWorker:
    """A Ray Data actor: one Restorer per worker, one photo per call.

    Args:
        options: the ``oldphoto restore`` options as a dict (what the driver parsed).
    """

    def __init__(self, options: dict[str, Any]) -> None:
        from .restore import build_restorer
        self.args = argparse.Namespace(**options)
        self.restorer = build_restorer(self.args)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in ("index", "input", "output", "status", "error",
                                                "mode", "width", "height", "seconds")}
        for index, src, dst in zip(batch["index"], batch["input"], batch["output"], strict=True):
            row = self._one(str(src), str(dst))
            out["index"].append(int(index))
            out["input"].append(row.input)
            out["output"].append(row.output)
            out["status"].append(row.status)
            out["error"].append(row.error or "")
            out["mode"].append(row.mode or "")
            out["width"].append(row.size[0] if row.size else -1)
            out["height"].append(row.size[1] if row.size else -1)
            out["seconds"].append(row.seconds if row.seconds is not None else -1.0)
        return out

    def _one(self, src: str, dst: str) -> ManifestRow:
        """One photo's row, whatever goes wrong: an exception here would fail the whole block,
        which the driver could not tell from a worker's death (see the module's docstring)."""
        from .restore import describe_failure, restore_job
        try:
            exists = remote_paths.uri_exists(dst) if is_uri(dst) else Path(dst).exists()
            if exists and not self.args.overwrite:
                return self._existing(src, dst)
            if is_uri(src) or is_uri(dst):
                return self._remote(src, dst)
            return restore_job(self.restorer, self.args, Path(src), Path(dst))[0]
        except Exception as exc:  # e.g. an output folder that cannot be read
            return ManifestRow(src, dst, "failed", error=describe_failure(exc))

    def _existing(self, src: str, dst: str) -> ManifestRow:
        """An output that exists: skipped, unless an attempt of this run that died with its
        worker wrote it (a local file newer than the run's start)."""
        from .restore import skipped_row
        started = getattr(self.args, "run_started", None)
        if started is not None and not is_uri(dst) and Path(dst).stat().st_mtime >= started:
            return ManifestRow(src, dst, "restored")
        return skipped_row(src, dst)

    def _remote(self, src: str, dst: str) -> ManifestRow:
        """A photo on another filesystem: copied in, restored as a local file, copied out."""
        from .restore import describe_failure, restore_job
        with tempfile.TemporaryDirectory(prefix="oldphoto-") as tmp:
            try:
                local = remote_paths.fetch(src, Path(tmp)) if is_uri(src) else Path(src)
                out = Path(tmp) / "restored.png" if is_uri(dst) else Path(dst)
                row, _ = restore_job(self.restorer, self.args, local, out)
                if row.status == "restored" and is_uri(dst):
                    remote_paths.upload(out, dst)
            except Exception as exc:  # a failed transfer is a failed photo
                return ManifestRow(src, dst, "failed", error=describe_failure(exc))
        return dataclasses.replace(row, input=src, output=dst)


def _row(rec: dict[str, Any]) -> ManifestRow:
    size = (int(rec["width"]), int(rec["height"])) if int(rec["width"]) >= 0 else None
    return ManifestRow(str(rec["input"]), str(rec["output"]), str(rec["status"]),
                       error=str(rec["error"]) or None, mode=str(rec["mode"]) or None,
                       size=size, seconds=float(rec["seconds"]) if rec["seconds"] >= 0 else None)


def _init(args: argparse.Namespace) -> None:
    ray = _ray()
    if ray.is_initialized():
        return
    address = args.ray_address or os.environ.get("RAY_ADDRESS")
    # a job on an existing cluster ships this package to its workers; a local cluster shares
    # this machine's environment
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
             include_dashboard=False)


def restore_rows(args: argparse.Namespace, jobs: list[tuple[Path, Path]], *,
                 worker_cls: type = RestoreWorker) -> Iterator[ManifestRow]:
    """Restore ``(input, output)`` pairs on Ray; yields each photo's row as it completes
    (unordered). Photos whose worker died :data:`ATTEMPTS` times are yielded as failed.
    ``worker_cls``: a :class:`RestoreWorker` subclass (e.g. one that adds a stage)."""
    ray = _ray()
    _init(args)
    with _engine_context():
        yield from _restore_rows(ray, args, jobs, worker_cls)


@contextmanager
def _engine_context() -> Iterator[None]:
    """Ray Data's settings for the passes while they run, then the caller's again: a block
    that kills its worker twice is skipped (the second pass retries its photos one by one),
    and no progress bars (the CLI has its own)."""
    from ray.data import DataContext
    ctx = DataContext.get_current()
    saved = ctx.max_errored_blocks, ctx.enable_progress_bars
    ctx.max_errored_blocks, ctx.enable_progress_bars = -1, False
    try:
        yield
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars = saved


def _restore_rows(ray: Any, args: argparse.Namespace, jobs: list[tuple[Path, Path]],
                  worker_cls: type) -> Iterator[ManifestRow]:
    options = {k: v for k, v in vars(args).items() if k != "func"}
    options["run_started"] = time.time()
    cpus = max(1, int(ray.available_resources().get("CPU", 1)))
    workers = args.workers or max(1, cpus // 2)
    per_task = max(1, args.batch_size)
    come_back = bytearray(len(jobs))  # 1 once a photo's row has arrived
    size = block_photos(len(jobs), workers, per_task)
    for indices, photos_per_block in ((range(len(jobs)), size), (None, 1)):
        if indices is None:  # second pass: what died with its worker, one photo per block
            indices = [i for i in range(len(jobs)) if not come_back[i]]
        if not indices:
            break
        items = [{"index": i, "input": str(jobs[i][0]), "output": str(jobs[i][1])}
                 for i in indices]
        blocks = -(-len(items) // photos_per_block)
        for rec in _pass(ray, items, blocks, worker_cls, options, workers, per_task,
                         cpus // workers, args.gpus_per_worker,
                         one_by_one=photos_per_block == 1):
            come_back[int(rec["index"])] = 1
            yield _row(rec)
        del items
    for i, (src, out) in enumerate(jobs):
        if not come_back[i]:
            yield ManifestRow(str(src), str(out), "failed",
                              error=f"its worker died {ATTEMPTS} times while restoring it "
                                    "(out of memory? --max-megapixels lowers the need)")


class PassWorkers:
    """The actors of one pass, named so that the pass can end them when it ends.

    Why: Ray Data lets go of a pool's actor only by dropping its handle, never with
    ``ray.kill`` (``_release_running_actor`` in Ray 2.60), and ``max_restarts=-1`` (which Ray
    Data needs: it never replaces a dead actor in a pool) has Ray restart an actor once more
    after its last death. A task that failed keeps that actor's handle: its ``DataOpTask``
    holds the error, whose traceback refers back to the task and, through its done-callback,
    to the handle; Ray Data also logs the error with its traceback, and a handler that keeps
    records (pytest's log capture, attached to the non-propagating ``ray.data`` logger)
    keeps the handle as long as it keeps the record. Until then the restarted actor holds
    its CPUs and GPUs idle, and the next pass, asking for the same ones, waits forever.
    """

    def __init__(self) -> None:
        self._prefix = f"oldphoto-{uuid.uuid4().hex[:12]}-"
        self._count = itertools.count()
        self.names: list[str] = []

    def remote_args(self) -> dict[str, Any]:
        """Ray Data calls this before it starts each actor (``ray_remote_args_fn``)."""
        name = f"{self._prefix}{next(self._count)}"
        self.names.append(name)
        return {"name": name}

    def end(self, ray: Any) -> None:
        """Kill the pass's actors that are still there, without restart."""
        for name in self.names:
            try:
                handle = ray.get_actor(name)
            except ValueError:  # already gone (released without a failed task)
                continue
            ray.kill(handle, no_restart=True)


def _pass(ray: Any, items: list[dict[str, Any]], blocks: int, worker_cls: type,
          options: dict[str, Any], workers: int, per_task: int, cpus: int, gpus: float, *,
          one_by_one: bool = False) -> Iterator[dict[str, Any]]:
    """One Ray Data pass over ``items`` in ``blocks`` blocks; yields the result records. Its
    actors are ended when it ends (:class:`PassWorkers`).

    ``one_by_one``: at most one task in flight per actor. Ray Data otherwise queues a second
    task on a busy actor; when that actor dies, the queued task fails with it and spends an
    attempt, and an innocent photo queued behind the culprit twice would be recorded as failed.
    """
    from ray.data import ActorPoolStrategy
    ds = ray.data.from_items(items, override_num_blocks=max(1, blocks))
    actors = PassWorkers()
    with warnings.catch_warnings():
        # Ray Data retries a dead actor's task forever by default; a bounded retry is only
        # expressible through the remote args, which Ray 2.60 marks deprecated (removal
        # planned for 2.64, hence the extra's upper bound) without a named replacement yet;
        # the same goes for ray_remote_args_fn, which names each actor
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        results = ds.map_batches(
            worker_cls, fn_constructor_kwargs={"options": options}, batch_size=per_task,
            compute=ActorPoolStrategy(size=workers,
                                      max_tasks_in_flight_per_actor=1 if one_by_one else None),
            num_gpus=gpus or None, num_cpus=max(1, cpus), max_restarts=-1,
            max_task_retries=ATTEMPTS - 1, ray_remote_args_fn=actors.remote_args)
    try:
        yield from results.iter_rows()
    finally:
        actors.end(ray)


def run_jobs(args: argparse.Namespace, jobs: list[tuple[Path, Path]],
             manifest: ManifestWriter) -> tuple[Tally, int]:
    """The Ray engine's loop for :func:`~oldphoto_core.cli.restore.run_restore`: rows written
    to ``manifest`` as they arrive; returns ``(tally, photos not reached)``."""
    tally = Tally()
    try:
        for row in restore_rows(args, jobs):
            tally.add(row)
            manifest.write(row)
            stream = sys.stderr if row.status == "failed" else sys.stdout
            print(f"{row.status} {row.input}" + (f": {row.error}" if row.status == "failed"
                                                   else ""), file=stream, flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return tally, max(1, len(jobs) - tally.total)
    return tally, 0


# -- Python API: a step of the user's own Ray Data pipeline ------------------------------------

def restore_options(**options: Any) -> argparse.Namespace:
    """``oldphoto restore`` options with the command line's defaults, ``options`` replacing
    some (``models``, ``scratch``, ``hr``, ``faces``, ``face_size``, ``precision``,
    ``max_megapixels``, ``device`` ...): the one place defaults are defined is the parser.
    One exception: ``faces`` defaults to ``off`` (a pipeline step should not start face
    detection unasked).

    Raises:
        OldPhotoError: an option the command line does not have.
    """
    from .commands import build_parser
    args = build_parser().parse_args(["restore", "-", "-o", "-"])
    unknown = sorted(set(options) - set(vars(args)))
    if unknown:
        raise OldPhotoError(f"unknown restore options {unknown}")
    vars(args).update(options)
    del args.func  # the CLI's dispatch, not an option
    if args.faces is None:
        args.faces = "off"
    return args


class DatasetWorker:
    """Restores the rows of a user's dataset: an ``image`` column (``[H, W, C]`` uint8,
    uint16 or float 0..1; C = 1, 3 or 4) or a ``path`` column (read as the CLI reads files).
    Adds ``restored`` (same dtype and channels as the input; 8/16-bit files give uint8/uint16),
    ``status`` (``restored`` / ``failed``), ``error`` and ``mode``; other columns pass through.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        from .restore import build_restorer
        self.args = argparse.Namespace(**options)
        self.restorer = build_restorer(self.args)

    def _one(self, row: dict[str, Any]) -> tuple[Any, str]:
        import numpy as np
        import torch

        from ..io.images import read_image, to_integer
        from .restore import restore_image
        if "image" in row:
            arr = np.asarray(row["image"])
            arr = arr[..., None] if arr.ndim == 2 else arr
            bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arr.dtype)
            scale = {8: 255.0, 16: 65535.0}.get(bits, 1.0)
            image = torch.from_numpy(arr.astype(np.float32) / scale).permute(2, 0, 1)[None]
        else:
            image, info = read_image(str(row["path"]))
            bits = info.bit_depth
        result = restore_image(self.restorer, self.args, image.clamp(0, 1))
        if bits is None:  # float in, float out
            return result.images[0].permute(1, 2, 0).numpy(), result.mode
        return to_integer(result.images[0], bits), result.mode  # the levels a PNG would hold

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .restore import describe_failure
        n = len(next(iter(batch.values())))
        rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
        restored, status, error, mode = [], [], [], []
        for row in rows:
            try:
                image, m = self._one(row)
                restored.append(image)
                status.append("restored")
                error.append("")
                mode.append(m)
            except Exception as exc:  # a failed row, never a failed job
                restored.append(np.zeros((0, 0, 3), np.uint8))
                status.append("failed")
                error.append(describe_failure(exc))
                mode.append("")
        return {**batch, "restored": restored, "status": status, "error": error, "mode": mode}


def restore_dataset(ds: Any, *, workers: int | None = None, gpus_per_worker: float = 0,
                    **options: Any) -> Any:
    """Restore a ``ray.data.Dataset`` inside a user's own pipeline (lazy, like any Ray Data
    transform). Rows carry ``image`` or ``path`` (see :class:`DatasetWorker`); ``options`` are
    the restore options (:func:`restore_options`), e.g. ``models="models/"``,
    ``scratch="auto"``. One Restorer per worker; a dead worker's rows are retried once.
    A photo that kills its worker twice fails the pipeline (Ray's ``ActorUnavailableError``,
    unnamed); only :func:`restore_rows` (the CLI) can retry alone and record such a photo.
    """
    ray = _ray()
    from ray.data import ActorPoolStrategy
    args = restore_options(**options)
    workers = workers or max(1, int(ray.available_resources().get("CPU", 1)) // 2)
    with warnings.catch_warnings():  # see restore_rows
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ds.map_batches(
            DatasetWorker, fn_constructor_kwargs={"options": vars(args)}, batch_size=1,
            batch_format="numpy", compute=ActorPoolStrategy(size=workers),
            num_gpus=gpus_per_worker or None, max_restarts=-1,
            max_task_retries=ATTEMPTS - 1)
