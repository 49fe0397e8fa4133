"""``oldphoto restore``: folders of scans in, restored PNGs out, models loaded once.

Outputs that already exist are skipped (so an interrupted run resumes) and counted in the
summary. Nothing is lost silently: a file that fails - whatever raised, a corrupt file, a scan
too large for memory, a full disk - is reported with its reason and the others go on; a folder
entry that is not taken (another format, a subfolder, a hidden file) is listed with the reason.
The exit code is 1 when any file failed, 2 when nothing could start (missing checkpoints, missing
face backend, an output folder that cannot be made), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import OldPhotoError, OutputError
from ..io.images import IMAGE_SUFFIXES, probe_image, read_image, write_image
from ..models import ROLES, default_models_dir, resolve_models
from ..pipeline import Restorer
from .manifest import MANIFEST_NAME, ManifestRow, ManifestWriter, Tally

__all__ = ["Inputs", "collect_inputs", "output_path", "run_restore", "describe_failure",
           "build_restorer", "restore_image", "restore_job", "skipped_row", "report",
           "why_not_taken"]


@dataclass
class Inputs:
    """What the command line's INPUT arguments name.

    Attributes:
        files: images to restore, in order, each once.
        problems: arguments that name nothing (a missing path, a pattern matching nothing);
            each counts as a failure.
        not_taken: ``(path, reason)`` of folder or pattern entries that are not images we read.
    """

    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    not_taken: list[tuple[Path, str]] = field(default_factory=list)


def why_not_taken(name: str, is_dir: bool, *, patterns: bool = True) -> str | None:
    """``None`` when a folder (or pattern) entry is taken, else the reason it is not; the
    same rule for local folders and, in the Ray engine, folders on other filesystems
    (``patterns=False``: no glob there to suggest)."""
    suffix = Path(name).suffix
    if name.startswith("."):
        return "hidden file (name starts with '.')"
    if is_dir:
        return ("a subfolder (not entered: name it" +
                (", or use a pattern such as DIR/**/*)" if patterns else ")"))
    if suffix.lower() not in IMAGE_SUFFIXES:
        return (f"not an accepted image format ({suffix or 'no extension'}; accepted: "
                f"{' '.join(IMAGE_SUFFIXES)})")
    return None


def collect_inputs(specs: list[str]) -> Inputs:
    """Expand files (always taken), folders (their entries, sorted) and glob patterns."""
    found = Inputs()
    files: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            entries = sorted(p.iterdir())
        elif p.is_file():
            files.append(p)
            continue
        elif glob.has_magic(spec):
            entries = sorted(Path(q) for q in glob.glob(spec, recursive=True))
            if not entries:
                found.problems.append(f"{spec}: pattern matches no file")
        else:
            found.problems.append(f"{spec}: no such file or folder")
            continue
        taken = 0
        for entry in entries:
            reason = why_not_taken(entry.name, entry.is_dir())
            if reason is None:
                files.append(entry)
                taken += 1
            elif not (glob.has_magic(spec) and entry.is_dir()):  # `**` lists folders too
                found.not_taken.append((entry, reason))
        if entries and not taken:
            found.problems.append(f"{spec}: holds no image in an accepted format "
                                  f"({' '.join(IMAGE_SUFFIXES)})")
    found.files = list(dict.fromkeys(f.resolve() for f in files))
    return found


def output_path(outdir: Path, src: Path, taken: set[Path]) -> Path:
    """``OUTDIR/<stem>.png``; a second input with the same stem keeps its extension."""
    out = outdir / f"{src.stem}.png"
    if out in taken:
        out = outdir / f"{src.stem}_{src.suffix.lstrip('.')}.png"
    taken.add(out)
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise OldPhotoError(f"--device {name!r}: {exc}") from exc


def describe_failure(exc: BaseException, src: Path | None = None) -> str:
    """One line for a photo that failed: our own messages as they are (less the file name,
    which the caller shows), anything else with its type and a hint (a bug or a resource
    problem we did not foresee)."""
    if isinstance(exc, OldPhotoError):
        return str(exc).removeprefix(f"{src}: ") if src is not None else str(exc)
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return (f"out of memory ({type(exc).__name__}); a smaller working size needs less: "
                f"--max-megapixels")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else '(no message)'} (--debug shows where)"


class _AttentionBar:
    """A second tqdm bar for the scratch attention of one photo, shown only once it is slow.

    The attention reports after every query chunk; small photos finish in seconds and would
    only flash a bar, so it appears after :attr:`after_s` seconds.
    """

    after_s = 5.0

    def __init__(self, name: str) -> None:
        self.name, self.bar, self.t0 = name, None, time.monotonic()

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.t0 < self.after_s:
                return
            self.bar = tqdm(total=total, desc=f"  attention {self.name}", unit="query",
                            unit_scale=True, leave=False, position=1)
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self) -> _AttentionBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _prepare_output(outdir: Path) -> None:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"output folder {outdir}: a file of that name exists") from exc
    except OSError as exc:
        raise OutputError(f"output folder {outdir} cannot be created: "
                          f"{exc.strerror or exc}") from exc
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {outdir}: no permission to write there")


def restore_image(restorer: Restorer, args: argparse.Namespace, image: torch.Tensor,
                  progress=None):
    """``restorer.restore`` with the options of ``args`` (one place maps options to the call,
    for files and for the arrays of the Ray dataset API)."""
    return restorer.restore(image, scratch=args.scratch, hr=args.hr, faces=args.faces,
                            face_size=args.face_size, keep_gray=not args.force_rgb,
                            progress=progress)


def _restore_one(restorer: Restorer, args: argparse.Namespace, src: Path,
                 out: Path) -> tuple[str, str, tuple[int, int]]:
    """Restore one file and write it; returns the log line, the mode and the input's
    ``(width, height)``. Raises whatever went wrong."""
    restorer.check_fits(probe_image(src), scratch=args.scratch, hr=args.hr,
                        faces=args.faces != "off")  # before decoding a single pixel
    image, info = read_image(src)
    with _AttentionBar(src.name) as bar:
        result = restore_image(restorer, args, image, progress=bar.update)
    del image
    tmp = out.with_name(out.name + ".part.png")
    try:
        write_image(tmp, result.images, bit_depth=info.bit_depth)
        os.replace(tmp, out)  # never leave a half-written output that resume would skip
    except OSError as exc:
        raise OutputError(f"{out}: cannot be written: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    faces = sum(len(f) for f in result.faces)
    working = restorer.working_size(tuple(result.images.shape[-2:]))
    notes = [result.mode]
    if args.faces != "off":
        notes.append(f"{faces} face{'s' * (faces != 1)}")
    if working != tuple(result.images.shape[-2:]):
        notes.append(f"restored at {working[1]}x{working[0]} and upsampled")
    h, w = result.images.shape[-2:]
    return f"{src} -> {out} ({', '.join(notes)})", result.mode, (int(w), int(h))


def build_restorer(args: argparse.Namespace, store=None) -> Restorer:
    """The Restorer the options describe; every engine process builds its own (models are
    loaded once per process, on first use). Stops early on what would fail every photo: a
    missing checkpoint, a missing face detector backend."""
    store = store or resolve_models(args.models, device=_device(args.device))
    models_dir = Path(args.models) if args.models else default_models_dir()
    insightface_root = args.insightface_root or str(models_dir / "insightface")
    restorer = Restorer(store, insightface_root=insightface_root, precision=args.precision,
                        max_megapixels=args.max_megapixels,
                        scratch_threshold=args.scratch_threshold)
    restorer.check_models(args.scratch, args.hr, args.faces != "off",
                          args.face_size or (512 if args.hr else 256))
    if args.faces != "off":
        restorer.face_detector(args.faces)
    return restorer


def _choose_faces(args: argparse.Namespace, store) -> None:
    """``--faces`` left unset: ``auto`` when the model set has the face model, else ``off``
    (the bundled set has none), said in one line."""
    if args.faces is not None:
        return
    face_role = "face_512" if (args.face_size or (512 if args.hr else 256)) == 512 \
        else "face_256"
    args.faces = "auto" if face_role in store else "off"
    if args.faces == "off":
        print(f"oldphoto: faces: off ({store.label} has no {ROLES[face_role].title}; "
              "`oldphoto models download` fetches the published face models)", file=sys.stderr)


def restore_job(restorer: Restorer, args: argparse.Namespace, src: Path,
                out: Path) -> tuple[ManifestRow, str]:
    """Restore one photo, whatever goes wrong: ``(its manifest row, its log line)``. Only a
    ``KeyboardInterrupt`` escapes."""
    t0 = time.perf_counter()
    try:
        line, mode, size = _restore_one(restorer, args, src, out)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one photo's failure, whatever raised it, never stops a batch
        msg = describe_failure(exc, src)
        if args.debug:
            traceback.print_exc()
        return (ManifestRow(str(src), str(out), "failed", error=msg,
                            seconds=time.perf_counter() - t0), f"FAILED {src}: {msg}")
    return (ManifestRow(str(src), str(out), "restored", mode=mode, size=size,
                        seconds=time.perf_counter() - t0), line)


def skipped_row(src: Path | str, out: Path | str) -> ManifestRow:
    return ManifestRow(str(src), str(out), "skipped",
                       error="the output exists (--overwrite to redo)")


def report(inputs: Inputs, tally: Tally, manifest: str, *, not_reached: int = 0) -> int:
    """Print the run's summary (every failed and not-taken file with its reason, the first
    skipped ones); returns the exit status: 0, 1 when anything failed, 130 when interrupted."""
    n = tally.counts
    print(f"restored {n['restored']}, skipped {n['skipped']} (output exists; --overwrite to "
          f"redo), failed {n['failed'] + len(inputs.problems)}, not taken "
          f"{len(inputs.not_taken)}"
          + (f", not reached {not_reached} (interrupted)" if not_reached else ""))
    for r in tally.skipped:
        print(f"  skipped {r.input}: {r.output} exists")
    if n["skipped"] > len(tally.skipped):
        print(f"  ... and {n['skipped'] - len(tally.skipped)} more skipped (see the manifest)")
    for msg in inputs.problems:
        print(f"  failed {msg}")
    for r in tally.failed:
        print(f"  failed {r.input}: {r.error}")
    for path, reason in inputs.not_taken:
        print(f"  not taken {path}: {reason}")
    print(f"record of every input: {manifest}")
    if not_reached:
        return 130
    return 1 if n["failed"] or inputs.problems else 0


def _run_ray(args: argparse.Namespace, store) -> int:
    """The Ray engine: local paths or URIs (``s3://`` ...), listed here, restored by workers."""
    from . import remote_paths
    from .ray_engine import run_jobs
    local_specs = [s for s in args.inputs if not remote_paths.is_uri(s)]
    inputs = collect_inputs(local_specs) if local_specs else Inputs()
    files: list[str] = [str(f) for f in inputs.files]
    for spec in (s for s in args.inputs if remote_paths.is_uri(s)):
        try:
            found, not_taken = remote_paths.list_uri_inputs(spec)
        except OldPhotoError as exc:
            inputs.problems.append(str(exc))
            continue
        files += found
        inputs.not_taken += not_taken
    for msg in inputs.problems:
        print(f"oldphoto restore: {msg}", file=sys.stderr)
    build_restorer(args, store)  # fail fast here (a missing file), not in every worker
    remote_out = remote_paths.is_uri(args.output)
    taken: set = set()
    jobs = [(src, remote_paths.uri_output(args.output, src, taken) if remote_out
             else output_path(Path(args.output), Path(src.split("://", 1)[-1]), taken))
            for src in files]
    # the manifest is appended locally; an object store has no append, so it is copied in
    # first and back at the end
    with tempfile.TemporaryDirectory(prefix="oldphoto-manifest-") as tmp:
        record = Path(tmp) if remote_out else Path(args.output)
        manifest_uri = remote_paths.join_uri(args.output, MANIFEST_NAME) if remote_out else ""
        if remote_out and remote_paths.uri_exists(manifest_uri):
            remote_paths.fetch(manifest_uri, record)
        with ManifestWriter(record) as manifest:
            tally, not_reached = run_jobs(args, jobs, manifest)
        if remote_out:
            remote_paths.upload(record / MANIFEST_NAME, manifest_uri)
    return report(inputs, tally, manifest_uri or str(Path(args.output) / MANIFEST_NAME),
                  not_reached=not_reached)


def run_restore(args: argparse.Namespace) -> int:
    from .remote_paths import is_uri
    engine = getattr(args, "engine", "local")
    uris = [s for s in (*args.inputs, args.output) if is_uri(s)]
    if uris and engine != "ray":
        raise OldPhotoError(f"{uris[0]}: paths on other filesystems need --engine ray (its "
                            "workers read and write them)")
    if not is_uri(args.output):
        _prepare_output(Path(args.output))  # before loading any model: a typo costs nothing
    store = resolve_models(args.models, device=_device(args.device))
    print(f"oldphoto: models: {store.label}", file=sys.stderr)
    _choose_faces(args, store)
    if engine == "ray":
        return _run_ray(args, store)
    inputs = collect_inputs(args.inputs)
    for msg in inputs.problems:
        print(f"oldphoto restore: {msg}", file=sys.stderr)
    outdir = Path(args.output)
    taken: set[Path] = set()
    jobs = [(src, output_path(outdir, src, taken)) for src in inputs.files]
    restorer = build_restorer(args, store)
    tally = Tally()
    not_reached = 0
    with ManifestWriter(outdir) as manifest:
        todo = []
        for src, out in jobs:
            if out.exists() and not args.overwrite:
                row = skipped_row(src, out)
                tally.add(row)
                manifest.write(row)
            else:
                todo.append((src, out))
        for i, (src, out) in enumerate(tqdm(todo, desc="restoring", unit="photo",
                                            disable=not todo)):
            try:
                row, line = restore_job(restorer, args, src, out)
            except KeyboardInterrupt:
                tqdm.write(f"interrupted while restoring {src}", file=sys.stderr)
                not_reached = len(todo) - i
                break
            tqdm.write(line, file=sys.stderr if row.status == "failed" else sys.stdout)
            tally.add(row)
            manifest.write(row)
    return report(inputs, tally, str(outdir / MANIFEST_NAME), not_reached=not_reached)
