"""Find the usable photos of a folder tree before training starts.

Every candidate's header is read once (no pixel decoding): a file that cannot be read is
reported once and left out, a photo smaller than the crop is upscaled or left out according to
``--small`` (the log says which and how many), and a folder with nothing usable raises
:class:`~training.errors.DataError` before any network is built. Training then never meets an
unreadable header; a file whose *pixels* turn out to be corrupt is handled by
:class:`~training.data.sources.PhotoSource`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from oldphoto_core.errors import InputError
from oldphoto_core.io.images import IMAGE_SUFFIXES, probe_image

from ..errors import DataError

__all__ = ["ImageEntry", "ScanResult", "list_image_files", "scan_images"]

Report = Callable[[str], None]


@dataclass(frozen=True)
class ImageEntry:
    """One usable photo: its path and size from the header."""

    path: str
    height: int
    width: int


@dataclass
class ScanResult:
    """The usable photos of a folder, and what was left out (for the log)."""

    root: Path
    entries: list[ImageEntry] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    small_upscaled: int = 0
    small_skipped: int = 0

    def __len__(self) -> int:
        return len(self.entries)


def list_image_files(root: Path) -> list[Path]:
    """Image files under ``root`` by extension, sorted (hidden files and folders excluded)."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    suffixes = set(IMAGE_SUFFIXES)
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def scan_images(root: Path, *, crop: int, small: str = "upscale",
                report: Report | None = None, what: str = "photos") -> ScanResult:
    """The usable photos under ``root``.

    Args:
        root: folder tree of JPEG/PNG/TIFF/WebP/BMP files.
        crop: the training crop side; photos with a shorter side are upscaled or skipped.
        small: ``"upscale"`` or ``"skip"``.
        report: called with one line per finding (unreadable file, small photos).
        what: what the folder holds, for messages (``"photos"``, ``"old photos"`` ...).

    Raises:
        DataError: ``root`` is not a folder, or holds no usable image.
    """
    files = list_image_files(root)
    result = ScanResult(root=root)
    for p in files:
        try:
            h, w = probe_image(p)
        except InputError as exc:
            result.unreadable.append((str(p), str(exc)))
            continue
        if min(h, w) < crop:
            if small == "skip":
                result.small_skipped += 1
                continue
            result.small_upscaled += 1
        result.entries.append(ImageEntry(str(p), h, w))
    if report is not None:
        for _path, why in result.unreadable:
            report(f"skipped unreadable file: {why}")
        if result.small_upscaled:
            report(f"{result.small_upscaled} of the {what} in {root} are smaller than the "
                   f"{crop} px crop: upscaled (bicubic) so that their short side is {crop}")
        if result.small_skipped:
            report(f"{result.small_skipped} of the {what} in {root} are smaller than the "
                   f"{crop} px crop: skipped (--small skip)")
    if not result.entries:
        reasons = [f"{len(files)} image file(s) found"]
        if result.unreadable:
            reasons.append(f"{len(result.unreadable)} unreadable")
        if result.small_skipped:
            reasons.append(f"{result.small_skipped} smaller than the {crop} px crop and "
                           "skipped (use --small upscale to keep them)")
        raise DataError(f"{root}: no usable {what} ({', '.join(reasons)}); expected a folder "
                        f"tree of JPEG/PNG/TIFF/WebP images")
    return result
