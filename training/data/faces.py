"""Aligned face crops for the face stage, made once before training.

Faces are found and aligned by :mod:`oldphoto_core.faces` with the template the restoration
uses (so the model is trained on exactly the crops it will be given), written as PNG files to
``OUT/faces/<face_size>/`` with a manifest, and reused by later runs over the same photos.
Detection runs in the main process of rank 0 only; the other processes wait for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oldphoto_core.errors import InputError
from oldphoto_core.faces import FaceDetector, align_faces, detect_faces

from ..errors import DataError
from .files import ImageEntry
from .images import load_rgb

__all__ = ["extract_faces", "load_extracted"]

_MANIFEST = "manifest.json"


def _key(paths: Sequence[str], face_size: int) -> str:
    h = hashlib.sha256(f"{face_size}\n".encode())
    for p in paths:
        h.update(p.encode() + b"\n")
    return h.hexdigest()


def load_extracted(out_dir: Path, paths: Sequence[str], face_size: int
                   ) -> list[ImageEntry] | None:
    """The faces of an earlier extraction over the same photos, or None."""
    manifest = out_dir / _MANIFEST
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    if data.get("key") != _key(paths, face_size):
        return None
    files = [out_dir / name for name in data["faces"]]
    if not all(f.is_file() for f in files):
        return None
    return [ImageEntry(str(f), face_size, face_size) for f in files]


def extract_faces(paths: Sequence[str], detector: FaceDetector, face_size: int,
                  out_dir: Path, *, report: Callable[[str], None] | None = None
                  ) -> list[ImageEntry]:
    """Detect and align every face of ``paths``; write the crops; return them.

    Args:
        paths: photos (any size).
        detector: a :class:`~oldphoto_core.faces.FaceDetector`.
        face_size: template size (256 or 512).
        out_dir: where the crops and the manifest go (created).
        report: receives one line per unreadable photo and a summary.

    Raises:
        DataError: no face was found in any photo.
    """
    say = report or (lambda _msg: None)
    cached = load_extracted(out_dir, paths, face_size)
    if cached is not None:
        say(f"reusing {len(cached)} aligned faces from {out_dir}")
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for i, path in enumerate(paths):
        try:
            img = load_rgb(path)[None]
        except (InputError, OSError) as exc:
            say(f"face extraction: skipped unreadable photo: {exc}")
            continue
        faces = align_faces(img, detect_faces(img, detector), face_size=face_size)[0]
        for j, face in enumerate(faces):
            assert face.aligned is not None
            name = f"{i:06d}_{j:02d}.png"
            _write_png(face.aligned, out_dir / name)
            names.append(name)
    if not names:
        raise DataError(f"no face found in the {len(paths)} photos (detector "
                        f"{getattr(detector, 'name', type(detector).__name__)}); give photos "
                        "with visible faces, or aligned crops with --aligned")
    (out_dir / _MANIFEST).write_text(json.dumps(
        {"key": _key(paths, face_size), "face_size": face_size, "faces": names}, indent=1))
    say(f"aligned {len(names)} faces from {len(paths)} photos into {out_dir}")
    return [ImageEntry(str(out_dir / n), face_size, face_size) for n in names]


def _write_png(image: torch.Tensor, path: Path) -> None:
    arr = np.rint(image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    Image.fromarray(arr, "RGB").save(path)
