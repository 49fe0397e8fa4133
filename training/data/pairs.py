"""Real labelled scratch pairs for the detector: ``DIR/images/NAME.*`` + ``DIR/masks/NAME.*``.

Files are matched by their path relative to ``images/`` and ``masks/`` without the extension,
so a JPEG photo may have a PNG mask. An image without a mask (or a mask without an image) is
reported once and left out; no complete pair is a :class:`~training.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oldphoto_core.errors import InputError
from oldphoto_core.io.images import probe_image

from ..errors import DataError
from .files import list_image_files

__all__ = ["LabelledPair", "scan_pairs"]


@dataclass(frozen=True)
class LabelledPair:
    """A photo and its scratch mask (white = scratch)."""

    image: str
    mask: str


def _by_stem(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in list_image_files(root)}


def scan_pairs(root: Path, *, report: Callable[[str], None] | None = None
               ) -> list[LabelledPair]:
    """The complete, readable pairs under ``root``.

    Raises:
        DataError: ``root/images`` or ``root/masks`` is missing, or no pair is complete.
    """
    say = report or (lambda _msg: None)
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise DataError(f"--pairs {root}: expected the sub-folders images/ and masks/ "
                            f"(matched by file name), {d} is missing")
    images, masks = _by_stem(images_dir), _by_stem(masks_dir)
    pairs = []
    for stem, img in sorted(images.items()):
        mask = masks.get(stem)
        if mask is None:
            say(f"labelled pairs: {img} has no mask in {masks_dir}; left out")
            continue
        try:
            size_i, size_m = probe_image(img), probe_image(mask)
        except InputError as exc:
            say(f"labelled pairs: skipped unreadable file: {exc}")
            continue
        if size_i != size_m:
            say(f"labelled pairs: {mask} is {size_m[1]}x{size_m[0]} but its photo is "
                f"{size_i[1]}x{size_i[0]}; the mask is resized (nearest)")
        pairs.append(LabelledPair(str(img), str(mask)))
    for stem in sorted(set(masks) - set(images)):
        say(f"labelled pairs: {masks[stem]} has no photo in {images_dir}; left out")
    if not pairs:
        raise DataError(f"--pairs {root}: no complete pair (photo in images/ with a mask of "
                        f"the same name in masks/)")
    return pairs
