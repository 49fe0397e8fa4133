"""A list of photos drawn in a seeded order, tolerant of files whose pixels fail to decode."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import torch

from oldphoto_core.errors import InputError

from ..errors import DataError
from .files import ImageEntry
from .images import apply_box, fit_for_crop, load_rgb, random_box, region_side
from .order import epoch_permutation

__all__ = ["PhotoSource", "report_once"]

_CHANNEL_ORDERS = tuple(itertools.permutations(range(3)))

# Files this process has already reported (a worker reports each bad file once).
_REPORTED: set[str] = set()


def report_once(path: str, why: str) -> None:
    """Print ``why`` to stderr the first time this process meets ``path``."""
    if path not in _REPORTED:
        _REPORTED.add(path)
        print(f"training: skipped a photo whose pixels cannot be decoded: {why}",
              file=sys.stderr)


class PhotoSource:
    """Photos of one folder, in the order of :func:`~training.data.order.epoch_permutation`.

    Args:
        entries: the usable photos (from :func:`~training.data.files.scan_images`).
        crop: crop side; photos are first brought to at least this size.
        max_side: downscale limit before cropping (0 = none).
        color_augment: permute each crop's colour channels at random (one of the six orders):
            a few photos then show the networks six times as many colours, e.g. the greens a
            folder of red and blue photos lacks. Grey photos are unchanged.
        photo_scale: :meth:`crop_to_damage` gives the pixel scale of the whole photo, so that
            synthetic defects on a crop are as wide as on the photo (False: as on a photo the
            size of the crop; runs made before this option was added).
    """

    def __init__(self, entries: list[ImageEntry], *, crop: int, max_side: int = 0,
                 color_augment: bool = False, photo_scale: bool = True) -> None:
        if not entries:
            raise DataError("no photos to draw from")
        self.entries = list(entries)
        self.crop_size, self.max_side = crop, max_side
        self.color_augment = color_augment
        self.photo_scale = photo_scale
        self._perm: tuple[tuple[int, int], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def index(self, k: int, seed: int, skip: int = 0) -> int:
        """The photo of sample counter ``k`` (``skip``: the one that many places later in the
        same epoch's order)."""
        n = len(self.entries)
        epoch = k // n
        if self._perm is None or self._perm[0] != (seed, epoch):
            self._perm = ((seed, epoch), epoch_permutation(n, seed, epoch))
        return int(self._perm[1][(k + skip) % n])

    def load(self, k: int, seed: int) -> torch.Tensor:
        """``[3, H, W]`` in [0, 1] of sample ``k``, fitted for cropping.

        A file that fails to decode is reported once and replaced by the next photo of the
        epoch's order, so a run never stops on it and stays a function of the seed.
        """
        for skip in range(len(self.entries)):
            path = self.entries[self.index(k, seed, skip)].path
            try:
                return fit_for_crop(load_rgb(path), self.crop_size, self.max_side)
            except (InputError, OSError, ValueError) as exc:
                report_once(path, str(exc))
        raise DataError("none of the photos could be decoded")

    def crop(self, k: int, seed: int, rng: np.random.Generator) -> torch.Tensor:
        """A random ``[3, crop, crop]`` crop of sample ``k`` (mirrored with probability 1/2;
        with ``color_augment``, its channels in a random order)."""
        return self.crop_to_damage(k, seed, rng)[0]

    def crop_to_damage(self, k: int, seed: int, rng: np.random.Generator,
                       seen_at: int | None = None) -> tuple[torch.Tensor, int | None]:
        """:meth:`crop`, and the short side of the photo (as fitted) it was cut from, the
        pixel scale :func:`~training.data.damage.damage` draws defects at (None without
        ``photo_scale``: the crop's own).

        ``seen_at``: the short side the consumer resizes whole photos to (the detector's
        256): the crop then covers the region that becomes ``crop`` pixels there, ``crop x
        short / seen_at`` pixels of the photo (at most its short side), for the caller to
        damage at the photo's scale and then resize as the consumer would (at least
        ``degrade``'s smallest size, 16).
        """
        img = self.load(k, seed)
        short = min(img.shape[1], img.shape[2])
        size = (self.crop_size if seen_at is None
                else region_side(self.crop_size, short, seen_at))
        out = apply_box(img, random_box(img.shape[1], img.shape[2], size, rng))
        if self.color_augment:
            out = out[list(_CHANNEL_ORDERS[int(rng.integers(0, len(_CHANNEL_ORDERS)))])]
        return out, (short if self.photo_scale else None)
