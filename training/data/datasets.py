"""What each stage trains on: one map-style dataset per stage, indexed by the sample counter.

``dataset[k]`` is a dict of CPU tensors in the networks' ranges (images in [-1, 1], masks in
{0, 1}); everything random about it comes from :mod:`training.data.order`'s streams for ``k``,
so the item is the same in any worker and after any resume. :meth:`SampleSet.preview` draws
from a separate seed, for the fixed sample grid.

Keys per stage (``C`` = crop):

* ``vae_clean``: ``clean [3, C, C]``.
* ``vae_old``: ``synthetic [3, C, C]`` and, with real old photos, ``real [3, C, C]``.
* ``mapping``: ``clean``, ``degraded`` (scratch/hr: damaged pixels painted white), and for
  scratch/hr ``mask [1, C, C]``.
* ``detector``: ``image [1, C, C]`` (luma, as the detector sees it), ``mask [1, C, C]``.
* ``face``: ``clean`` and ``degraded`` ``[3, C, C]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from oldphoto_core.errors import InputError
from oldphoto_core.stages.scratch import DETECTOR_SHORT_SIDE, luma

from ..errors import DataError
from .damage import (
    DETECTABLE,
    FULL,
    HR_MASK_DILATION,
    UNSTRUCTURED_ONLY,
    damage,
    paint_damaged,
    shrink_and_restore,
)
from .images import (
    apply_box,
    fit_for_crop,
    load_gray,
    load_rgb,
    random_box,
    region_side,
    resize_mask,
    resize_square,
    shrink_mask,
)
from .images import to_signed as signed
from .order import Stream, sample_rng, sample_seed
from .pairs import LabelledPair
from .sources import PhotoSource, report_once

__all__ = ["SampleSet", "CleanSet", "OldSet", "MappingSet", "DetectorSet", "FaceSet"]

#: The counters are unbounded (the sampler hands them out); a length is only needed by the
#: DataLoader's bookkeeping.
_UNBOUNDED = 1 << 62


class SampleSet(Dataset):
    """Base: ``self[k] = self.make(k, seed)``; ``preview(k)`` uses a seed of its own."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __len__(self) -> int:
        return _UNBOUNDED

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.make(int(k), self.seed)

    def preview(self, k: int) -> dict[str, torch.Tensor]:
        """An item of the preview stream (never seen in training order)."""
        return self.make(int(k), self.seed + Stream.PREVIEW)

    def make(self, k: int, seed: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class CleanSet(SampleSet):
    """Random crops of clean photos (``vae_clean``)."""

    def __init__(self, source: PhotoSource, seed: int) -> None:
        super().__init__(seed)
        self.source = source

    def make(self, k: int, seed: int) -> dict[str, torch.Tensor]:
        clean = self.source.crop(k, seed, sample_rng(seed, Stream.CROP, k))
        return {"clean": signed(clean)}


class OldSet(SampleSet):
    """Synthetic old photos (damaged crops of ``--data``) and real ones (``--old``)."""

    def __init__(self, source: PhotoSource, old: PhotoSource | None, seed: int) -> None:
        super().__init__(seed)
        self.source, self.old = source, old

    def make(self, k: int, seed: int) -> dict[str, torch.Tensor]:
        clean, side = self.source.crop_to_damage(k, seed, sample_rng(seed, Stream.CROP, k))
        synthetic, _ = damage(clean, sample_seed(seed, Stream.DAMAGE, k), FULL, side)
        item = {"synthetic": signed(synthetic)}
        if self.old is not None:
            old_seed = seed + Stream.OLD
            item["real"] = signed(self.old.crop(k, old_seed, sample_rng(old_seed, Stream.CROP, k)))
        return item


class MappingSet(SampleSet):
    """(damaged, clean) crop pairs; scratch/hr add the ground-truth mask and paint it white."""

    def __init__(self, source: PhotoSource, variant: str, seed: int) -> None:
        super().__init__(seed)
        self.source, self.variant = source, variant

    def make(self, k: int, seed: int) -> dict[str, torch.Tensor]:
        clean, side = self.source.crop_to_damage(k, seed, sample_rng(seed, Stream.CROP, k))
        config = UNSTRUCTURED_ONLY if self.variant == "quality" else DETECTABLE
        damaged, mask = damage(clean, sample_seed(seed, Stream.DAMAGE, k), config, side)
        item = {"clean": signed(clean)}
        if self.variant == "quality":
            item["degraded"] = signed(damaged)
            return item
        dilation = HR_MASK_DILATION if self.variant == "hr" else 0
        painted, mask = paint_damaged(damaged, mask, dilation)
        item["degraded"], item["mask"] = signed(painted), mask
        return item


def to_detector_scale(image: torch.Tensor, mask: torch.Tensor, side: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize a damaged region and its mask to ``side`` x ``side`` as restoration brings a
    photo to the detector (bilinear, no antialiasing: :func:`~oldphoto_core.stages.scratch.
    scratch_probability`); a mask pixel is damaged when at least half its area was.

    Shape: ``[3, S, S]``, ``[1, S, S]`` -> ``[3, side, side]``, ``[1, side, side]``.
    """
    if image.shape[-1] == side:
        return image, mask
    image = F.interpolate(image[None], (side, side), mode="bilinear", align_corners=False)[0]
    return image, shrink_mask(mask[None], (side, side))[0]


class DetectorSet(SampleSet):
    """(luma of a damaged crop, its defect mask), from ``degrade`` or from real labelled pairs.

    The restoration runs the detector on whole photos brought to a short side of 256
    (``DETECTOR_SHORT_SIDE``), so each crop shows what ``crop`` pixels of that view show: a
    region of ``crop x short / 256`` photo pixels, damaged at the photo's scale, then resized.

    Args:
        source: clean photos to damage.
        pairs: real labelled pairs (or None).
        pairs_fraction: share of samples taken from ``pairs`` (a seeded coin per sample).
        crop: crop side.
        max_side: downscale limit before cropping.
    """

    def __init__(self, source: PhotoSource | None, pairs: list[LabelledPair] | None,
                 pairs_fraction: float, seed: int, *, crop: int, max_side: int = 0) -> None:
        super().__init__(seed)
        if source is None and not pairs:
            raise DataError("the detector needs photos to damage or labelled pairs")
        self.source, self.pairs = source, pairs or []
        self.fraction = pairs_fraction if (self.pairs and source is not None) else (
            1.0 if self.pairs else 0.0)
        self.crop, self.max_side = crop, max_side

    def make(self, k: int, seed: int) -> dict[str, torch.Tensor]:
        use_pair = self.fraction > 0 and (
            self.fraction >= 1 or sample_rng(seed, Stream.PICK, k).random() < self.fraction)
        rng = sample_rng(seed, Stream.CROP, k)
        if use_pair:
            image, mask = self._pair(k, seed, rng)
        else:
            assert self.source is not None
            clean, side = self.source.crop_to_damage(k, seed, rng, seen_at=DETECTOR_SHORT_SIDE)
            image, mask = damage(clean, sample_seed(seed, Stream.DAMAGE, k), DETECTABLE, side)
            image, mask = to_detector_scale(image, mask, self.crop)
        return {"image": signed(luma(image[None])[0]), "mask": mask}

    def _pair(self, k: int, seed: int, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """A random crop of a labelled pair; a pair that fails to decode is reported once and
        the next one is used (as :class:`PhotoSource` does with photos)."""
        first = int(sample_rng(seed, Stream.PAIR, k).integers(len(self.pairs)))
        for skip in range(len(self.pairs)):
            pair = self.pairs[(first + skip) % len(self.pairs)]
            try:
                image = fit_for_crop(load_rgb(pair.image), self.crop, self.max_side)
                mask = load_gray(pair.mask)
                break
            except (InputError, OSError, ValueError) as exc:
                report_once(pair.image, str(exc))
        else:
            raise DataError("none of the labelled pairs could be decoded")
        mask = resize_mask(mask, image.shape[-2:])
        size = region_side(self.crop, min(image.shape[1], image.shape[2]), DETECTOR_SHORT_SIDE)
        box = random_box(image.shape[1], image.shape[2], size, rng)
        return to_detector_scale(apply_box(image, box), (apply_box(mask, box) > 0.5).float(),
                                 self.crop)


class FaceSet(SampleSet):
    """(degraded, clean) aligned faces at ``side`` px: shrunk, then damaged without scratches."""

    def __init__(self, source: PhotoSource, side: int, max_downscale: float,
                 seed: int) -> None:
        super().__init__(seed)
        self.source, self.side, self.max_downscale = source, side, max_downscale

    def make(self, k: int, seed: int) -> dict[str, torch.Tensor]:
        face = resize_square(self.source.load(k, seed), self.side)
        if sample_rng(seed, Stream.CROP, k).random() < 0.5:
            face = face.flip(-1)  # the template is mirror-symmetric
        small = shrink_and_restore(face, sample_rng(seed, Stream.SCALE, k), self.max_downscale)
        degraded, _ = damage(small, sample_seed(seed, Stream.DAMAGE, k), UNSTRUCTURED_ONLY)
        return {"clean": signed(face), "degraded": signed(degraded)}
