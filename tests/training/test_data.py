"""Data: usable photos, seeded order, pure per-sample randomness, workers, pairs, faces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto_core.faces import Face, face_template
from training.data import (
    CleanSet,
    DetectorSet,
    MappingSet,
    PhotoSource,
    StepBatchSampler,
    epoch_permutation,
    make_loader,
    scan_images,
)
from training.data.faces import extract_faces
from training.data.pairs import scan_pairs
from training.errors import DataError


def _png(path, h, w, value=None, seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if value is None else \
        np.full((h, w, 3), value, np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_scan_reports_unreadable_files_once_and_upscales_or_skips_small_ones(tmp_path):
    _png(tmp_path / "big.png", 40, 50)
    _png(tmp_path / "small.png", 20, 50)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    said: list[str] = []
    scan = scan_images(tmp_path, crop=32, report=said.append)
    assert all(e.path.endswith(n) for e, n in zip(scan.entries, ("big.png", "small.png"),
                                                  strict=True))
    assert sum("broken.jpg" in s for s in said) == 1
    assert any("upscaled" in s and "1 of the photos" in s for s in said)
    said.clear()
    scan = scan_images(tmp_path, crop=32, small="skip", report=said.append)
    assert len(scan) == 1 and any("skipped (--small skip)" in s for s in said)


def test_a_folder_without_usable_images_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    _png(tmp_path / "tiny.png", 8, 8)
    with pytest.raises(DataError, match=r"no usable photos \(2 image file\(s\) found, 1 "
                                        r"unreadable, 1 smaller than the 32 px crop"):
        scan_images(tmp_path, crop=32, small="skip")
    with pytest.raises(DataError, match="not a folder"):
        scan_images(tmp_path / "missing", crop=32)


def test_epoch_order_is_a_seeded_permutation():
    p0, p1 = epoch_permutation(10, 3, 0), epoch_permutation(10, 3, 1)
    assert sorted(p0.tolist()) == list(range(10))
    assert np.array_equal(p0, epoch_permutation(10, 3, 0)) and not np.array_equal(p0, p1)


def test_step_sampler_shards_ranks_and_continues_after_resume():
    ranks = [list(StepBatchSampler(start_step=0, stop_step=3, batch=2, world=2, rank=r))
             for r in range(2)]
    assert ranks[0] == [[0, 1], [4, 5], [8, 9]] and ranks[1] == [[2, 3], [6, 7], [10, 11]]
    fresh = list(StepBatchSampler(start_step=0, stop_step=5, batch=3))
    resumed = list(StepBatchSampler(start_step=2, stop_step=5, batch=3, base_step=2,
                                    base_sample=6))
    assert fresh[2:] == resumed


def test_items_are_pure_functions_of_seed_and_counter(photos):
    scan = scan_images(photos, crop=32)
    a = MappingSet(PhotoSource(scan.entries, crop=32), "scratch", seed=7)
    b = MappingSet(PhotoSource(scan.entries, crop=32), "scratch", seed=7)
    for k in (5, 0, 12):   # any order, separate instances
        x, y = a[k], b[k]
        assert all(torch.equal(x[key], y[key]) for key in x)
    assert not torch.equal(a[1]["clean"], a[2]["clean"])
    assert not torch.equal(a[3]["clean"], a.preview(3)["clean"])


def test_color_augment_permutes_the_channels_of_the_same_crop(photos):
    scan = scan_images(photos, crop=32)
    plain = PhotoSource(scan.entries, crop=32)
    mixed = PhotoSource(scan.entries, crop=32, color_augment=True)
    orders = set()
    for k in range(24):
        a = plain.crop(k, 3, np.random.default_rng(k))
        b = mixed.crop(k, 3, np.random.default_rng(k))   # same box: drawn before the order
        order = next(o for o in itertools.permutations(range(3)) if torch.equal(a[list(o)], b))
        orders.add(order)
    assert len(orders) > 3  # several of the six orders occur


def test_crops_are_damaged_at_their_photos_scale_with_masks_of_what_shows(photos):
    """A crop carries its photo's short side (the defects' pixel scale; none with
    ``photo_scale=False``). The detector's crops cover what ``crop`` pixels of the photo
    brought to the detector's short side show, and their targets are the drawn damage that
    still shows: a subset of the full recipe's mask for the same draw."""
    from oldphoto_core.stages.scratch import DETECTOR_SHORT_SIDE
    from training.data.damage import FULL, damage
    from training.data.datasets import to_detector_scale
    from training.data.order import Stream, sample_rng, sample_seed
    scan = scan_images(photos, crop=32)
    source = PhotoSource(scan.entries, crop=32)
    own = PhotoSource(scan.entries, crop=32, photo_scale=False)
    a, side = source.crop_to_damage(2, 0, np.random.default_rng(1))
    b, none = own.crop_to_damage(2, 0, np.random.default_rng(1))
    assert torch.equal(a, b) and none is None and side == min(source.load(2, 0).shape[1:]) > 32
    region, _ = source.crop_to_damage(2, 0, np.random.default_rng(1), seen_at=16)
    assert region.shape[-1] == side  # 32 px at a short side of 16: the whole short side
    detector = DetectorSet(source, None, 0.0, seed=3, crop=32)
    fewer = 0
    for k in range(4):
        clean, side = source.crop_to_damage(k, 3, sample_rng(3, Stream.CROP, k),
                                            seen_at=DETECTOR_SHORT_SIDE)
        assert clean.shape[-1] == max(16, round(32 * side / DETECTOR_SHORT_SIDE))
        damaged, drawn = damage(clean, sample_seed(3, Stream.DAMAGE, k), FULL, side)
        _, drawn = to_detector_scale(damaged, drawn, 32)
        seen = detector[k]["mask"]
        assert seen.shape == (1, 32, 32) and (seen <= drawn).all()
        fewer += int(seen.sum() < drawn.sum())
    assert fewer > 0


def test_scratch_pairs_paint_the_mask_white_and_hr_dilates_it(photos):
    scan = scan_images(photos, crop=32)
    src = PhotoSource(scan.entries, crop=32)
    for k in range(6):
        item = MappingSet(src, "scratch", seed=1)[k]
        hr = MappingSet(src, "hr", seed=1)[k]
        painted = item["mask"].expand(3, -1, -1) > 0
        assert torch.all(item["degraded"][painted] == 1.0)
        assert torch.all(hr["mask"] >= item["mask"])       # dilation only adds pixels
        assert hr["mask"].sum() >= item["mask"].sum()


def test_batches_do_not_depend_on_the_number_of_workers(photos):
    scan = scan_images(photos, crop=32)
    dataset = CleanSet(PhotoSource(scan.entries, crop=32), seed=3)
    batches = {}
    for workers in (0, 2):
        sampler = StepBatchSampler(start_step=0, stop_step=3, batch=2)
        batches[workers] = [b["clean"] for b in make_loader(dataset, sampler, workers=workers)]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2], strict=True))


def test_a_photo_that_fails_to_decode_is_replaced_and_reported_once(tmp_path, capsys):
    _png(tmp_path / "a.png", 40, 40, value=10)
    data = (tmp_path / "b.png")
    _png(data, 40, 40, seed=1)
    data.write_bytes(data.read_bytes()[:200])      # header intact, pixels truncated
    scan = scan_images(tmp_path, crop=32)
    assert len(scan) == 2
    src = PhotoSource(scan.entries, crop=32)
    images = [src.load(k, seed=0) for k in range(4)]
    assert all(torch.allclose(img, torch.full_like(img, 10 / 255)) for img in images)
    assert capsys.readouterr().err.count("b.png") == 1


def test_labelled_pairs_match_by_name_and_train_the_detector(tmp_path):
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    _png(tmp_path / "images" / "sub" / "one.jpg", 48, 48, value=100)
    mask = np.zeros((48, 48), np.uint8)
    mask[:, 10:12] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "sub" / "one.png")
    _png(tmp_path / "images" / "orphan.png", 48, 48)
    said: list[str] = []
    pairs = scan_pairs(tmp_path, report=said.append)
    assert len(pairs) == 1 and pairs[0].mask.endswith("one.png")
    assert any("orphan.png has no mask" in s for s in said)
    ds = DetectorSet(None, pairs, 1.0, seed=0, crop=32)
    for k in range(4):
        item = ds[k]
        assert item["image"].shape == item["mask"].shape == (1, 32, 32)
        cols = item["mask"][0].sum(dim=0)
        assert set(cols.unique().tolist()) <= {0.0, 32.0} and cols.sum() in (0, 32, 64)
    with pytest.raises(DataError, match="masks"):
        scan_pairs(tmp_path / "images")


class _FakeDetector:
    """Finds one face whose landmarks are the 256 px template moved by (dx, dy)."""

    name = "fake"

    def __init__(self, dx: float, dy: float) -> None:
        self.dx, self.dy = dx, dy

    def detect(self, image: np.ndarray) -> list[Face]:
        lm = face_template(256).astype(np.float64) + [self.dx, self.dy]
        return [Face(box=(0, 0, 10, 10), score=1.0, landmarks=lm)]


def test_faces_are_detected_aligned_and_cached(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    arr = np.zeros((300, 320, 3), np.uint8)
    arr[20:, 30:] = 200                      # the template moved by (30, 20) lands here
    Image.fromarray(arr).save(photos / "p.png")
    paths = [str(photos / "p.png")]
    out = tmp_path / "faces"
    entries = extract_faces(paths, _FakeDetector(30, 20), 256, out)
    assert len(entries) == 1
    crop = np.asarray(Image.open(entries[0].path))
    assert crop.shape == (256, 256, 3) and (crop == 200).all()  # a pure translation
    said: list[str] = []
    again = extract_faces(paths, _FakeDetector(0, 0), 256, out, report=said.append)
    assert again == entries and "reusing" in said[0]
    with pytest.raises(DataError, match="no face found"):
        extract_faces(paths, type("None_", (), {"name": "none", "detect": lambda s, i: []})(),
                      256, tmp_path / "none")
