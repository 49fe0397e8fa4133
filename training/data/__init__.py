"""Data pipeline: folder -> usable photos -> seeded crops -> damage on the fly, in workers.

* :mod:`.files` finds usable photos (unreadable reported once, small ones upscaled or skipped);
* :mod:`.order` makes the order and every random draw a function of ``(seed, sample counter)``;
* :mod:`.sources`, :mod:`.images` load and crop; :mod:`.damage` wraps ``degrade``;
* :mod:`.datasets` holds one dataset per stage; :mod:`.pairs` and :mod:`.faces` prepare real
  labelled pairs and aligned faces; :mod:`.loader` builds the DataLoader.
"""

from .datasets import CleanSet, DetectorSet, FaceSet, MappingSet, OldSet, SampleSet
from .files import ImageEntry, ScanResult, scan_images
from .loader import make_loader
from .order import StepBatchSampler, epoch_permutation, sample_rng, sample_seed
from .sources import PhotoSource

__all__ = ["CleanSet", "DetectorSet", "FaceSet", "ImageEntry", "MappingSet", "OldSet",
           "PhotoSource", "SampleSet", "ScanResult", "StepBatchSampler", "epoch_permutation",
           "make_loader", "sample_rng", "sample_seed", "scan_images"]
