"""Inputs and outputs on any filesystem pyarrow understands (``s3://``, ``gs://``, ``hdfs://``,
``file://`` ...), for the Ray engine, whose workers run where local paths mean nothing.

The driver lists a URI folder (names only); each worker copies one photo to a local temporary
file, restores it with the local engine's code, and uploads the result. Nothing here decodes an
image; :mod:`oldphoto_core.io.images` still reads every file, so formats, bit depth, grey and alpha
are handled exactly as for local files. pyarrow comes with Ray Data (``oldphoto[ray]``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePosixPath

from ..errors import InputError, OutputError

__all__ = ["is_uri", "list_uri_inputs", "uri_exists", "fetch", "upload", "join_uri",
           "uri_output"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: str | Path) -> bool:
    """``scheme://...`` (a local path, even an absolute one, is not)."""
    return isinstance(path, str) and bool(_SCHEME.match(path))


def _fs(uri: str):
    try:
        import pyarrow.fs as pafs
    except ImportError as exc:
        raise InputError(f"{uri}: URI inputs need pyarrow: pip install \"oldphoto[ray]\"") \
            from exc
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise InputError(f"{uri}: not a filesystem pyarrow can open: {exc}") from exc


def join_uri(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


def uri_output(outdir: str, src: str, taken: set[str]) -> str:
    """``OUTDIR/<stem>.png``; a second input with the same stem keeps its extension (the local
    engine's rule, :func:`~oldphoto_core.cli.restore.output_path`)."""
    name = PurePosixPath(src.split("://", 1)[-1])
    out = join_uri(outdir, f"{name.stem}.png")
    if out in taken:
        out = join_uri(outdir, f"{name.stem}_{name.suffix.lstrip('.')}.png")
    taken.add(out)
    return out


def list_uri_inputs(uri: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``(photos, not_taken)`` of a URI: the file itself, or a folder's entries (not entered
    recursively, hidden files and other formats listed as not taken, as for local folders).

    Raises:
        InputError: nothing there, or the filesystem cannot be reached.
    """
    import pyarrow.fs as pafs
    fs, path = _fs(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{uri}: no such file or folder")
    if info.type == pafs.FileType.File:
        return [uri], []
    from .restore import why_not_taken
    photos, not_taken = [], []
    for entry in sorted(fs.get_file_info(pafs.FileSelector(path, recursive=False)),
                        key=lambda e: e.base_name):
        child = join_uri(uri, entry.base_name)
        reason = why_not_taken(entry.base_name, entry.type == pafs.FileType.Directory,
                               patterns=False)
        if reason is None:
            photos.append(child)
        else:
            not_taken.append((child, reason))
    return photos, not_taken


def uri_exists(uri: str) -> bool:
    import pyarrow.fs as pafs
    fs, path = _fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def fetch(uri: str, folder: Path) -> Path:
    """Copy ``uri`` into ``folder`` (same file name); returns the local copy."""
    fs, path = _fs(uri)
    local = folder / PurePosixPath(path).name
    try:
        with fs.open_input_stream(path) as src, local.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        raise InputError(f"{uri}: cannot be read: {exc}") from exc
    return local


def upload(local: Path, uri: str) -> None:
    """Copy ``local`` to ``uri`` (parents created where the filesystem has folders)."""
    fs, path = _fs(uri)
    try:
        parent = str(PurePosixPath(path).parent)
        fs.create_dir(parent, recursive=True)
        with local.open("rb") as src, fs.open_output_stream(path) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        raise OutputError(f"{uri}: cannot be written: {exc}") from exc
