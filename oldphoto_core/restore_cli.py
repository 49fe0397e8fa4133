"""``oldphoto restore``: folders of scans in, restored PNGs out, models loaded once.

Outputs that already exist are skipped (so an interrupted run resumes) and counted in the
summary; a file that fails is reported and the others go on; the exit code is 1 when any file
failed, 2 when nothing could start (missing checkpoints, missing face backend).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .errors import OldPhotoError
from .imageio import IMAGE_SUFFIXES, read_image, write_image
from .models import ModelStore, default_models_dir
from .pipeline import Restorer

__all__ = ["collect_inputs", "output_path", "run_restore"]


def collect_inputs(specs: list[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders (their images, sorted) and glob patterns; returns (files, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"{spec}: folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(spec):
            found = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file())
            if not found:
                problems.append(f"{spec}: pattern matches no file")
            files += found
        else:
            problems.append(f"{spec}: no such file or folder")
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, problems


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


def run_restore(args: argparse.Namespace) -> int:
    files, problems = collect_inputs(args.inputs)
    for msg in problems:
        print(f"oldphoto restore: {msg}", file=sys.stderr)
    models_dir = Path(args.models) if args.models else default_models_dir()
    insightface_root = args.insightface_root or str(models_dir / "insightface")
    store = ModelStore(models_dir, device=_device(args.device))
    restorer = Restorer(store, insightface_root=insightface_root, precision=args.precision)
    restorer.check_models(args.scratch, args.hr, args.faces != "off",
                          args.face_size or (512 if args.hr else 256))
    if args.faces != "off":
        restorer.face_detector(args.faces)  # a missing backend stops here, before any work
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    taken: set[Path] = set()
    jobs = [(src, output_path(outdir, src, taken)) for src in files]
    skipped = [(s, o) for s, o in jobs if o.exists() and not args.overwrite]
    todo = [(s, o) for s, o in jobs if not (o.exists() and not args.overwrite)]
    failed: list[tuple[Path, str]] = []
    done = 0
    for src, out in tqdm(todo, desc="restoring", unit="photo", disable=not todo):
        try:
            image, info = read_image(src)
            with _AttentionBar(src.name) as bar:
                result = restorer.restore(image, scratch=args.scratch, hr=args.hr,
                                          faces=args.faces, face_size=args.face_size,
                                          keep_gray=not args.force_rgb, progress=bar.update)
            tmp = out.with_name(out.name + ".part.png")
            write_image(tmp, result.images, bit_depth=info.bit_depth)
            os.replace(tmp, out)  # never leave a half-written output that resume would skip
            faces = sum(len(f) for f in result.faces)
            tqdm.write(f"{src} -> {out} ({result.mode}"
                       + (f", {faces} face{'s' * (faces != 1)}" if args.faces != "off" else "")
                       + ")")
            done += 1
        except OldPhotoError as exc:
            failed.append((src, str(exc)))
            tqdm.write(f"FAILED {src}: {exc}", file=sys.stderr)
        except (RuntimeError, ValueError, OSError) as exc:  # e.g. out of memory on a huge scan
            failed.append((src, f"{type(exc).__name__}: {exc}"))
            tqdm.write(f"FAILED {src}: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"restored {done}, skipped {len(skipped)} (output exists; --overwrite to redo), "
          f"failed {len(failed) + len(problems)}")
    for src, out in skipped:
        print(f"  skipped {src}: {out} exists")
    for src, msg in failed:
        print(f"  failed {src}: {msg.splitlines()[0]}")
    return 1 if failed or problems else 0
