"""Inputs people actually have: gray, RGBA, 16-bit, EXIF-rotated, tiny, empty, odd sizes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from numeric_bounds import stack_tolerance
from PIL import Image

from oldphoto_core import InputError, read_image, write_image
from oldphoto_core.pipeline import Restorer


@pytest.fixture(scope="module")
def photo(parity: Path) -> torch.Tensor:
    img, _ = read_image(parity.parent / "samples" / "old_w_scratch" / "b.png")
    return img  # [1, 4, 256, 256] RGBA


@pytest.fixture(scope="module")
def restorer(synthetic_store) -> Restorer:
    return Restorer(synthetic_store)


def test_gray_stays_gray_and_can_be_forced_to_rgb(restorer, photo) -> None:
    gray = photo[:, :3].mean(dim=1, keepdim=True)[..., :72, :90]
    out = restorer.restore(gray, scratch="off")
    assert out.images.shape == (1, 1, 72, 90)
    assert restorer.restore(gray, scratch="off", keep_gray=False).images.shape == (1, 3, 72, 90)


def test_rgba_keeps_its_alpha(restorer, photo) -> None:
    rgba = photo.clone()
    rgba[:, 3, :40] = 0.25
    out = restorer.restore(rgba, scratch="on")
    assert out.images.shape == rgba.shape
    assert torch.equal(out.images[:, 3], rgba[:, 3])
    assert out.masks.shape == (1, 1, 256, 256)


def test_any_size_in_same_size_out(restorer, photo) -> None:
    odd = photo[:, :3, :93, :117]
    for scratch in ("off", "on"):
        res = restorer.restore(odd, scratch=scratch)
        assert res.images.shape == odd.shape
        assert res.masks.shape == (1, 1, 93, 117)
        assert 0 <= float(res.images.min()) and float(res.images.max()) <= 1


def test_batch_items_do_not_talk_to_each_other(restorer, photo) -> None:
    """Changing one item of a batch leaves the other's result bit-identical.

    Same batch shape, same kernels, same summation order for the unchanged item: exact on any
    CPU. Shared statistics (normalisation, stretch, attention keys or the scratch decision
    taken over the batch) would move its pixels. Batch-of-2 against batch-of-1 results, by
    contrast, differ by the rounding of other kernel shapes, which proves nothing about
    cross-talk.
    """
    first = photo[:, :3, :64, :80]
    others = [photo[:, :3, 100:164, 50:130].flip(-1) * 0.5,   # float-valued
              torch.ones_like(first)]                            # 8-bit-valued, flat
    runs = [restorer.restore(torch.cat([first, other]), scratch="on") for other in others]
    for run in runs[1:]:
        assert torch.equal(run.images[0], runs[0].images[0])
        assert torch.equal(run.masks[0], runs[0].masks[0])
    assert not torch.equal(runs[1].images[1], runs[0].images[1])  # the other item did change


def test_tiled_pipeline_equals_untiled(synthetic_store, photo) -> None:
    rgb = photo[:, :3, :128, :160]
    plain = Restorer(synthetic_store, tile="off").restore(rgb, scratch="on")
    tiled = Restorer(synthetic_store, tile="on").restore(rgb, scratch="on")
    # strips vs whole maps: other summation orders (float64 norm statistics in strips) through
    # the float32 chain encoder -> mapping -> decoder; a wrong halo or padding moves pixels by
    # O(1), far beyond this bound (see numeric_bounds.stack_tolerance)
    chain = torch.nn.ModuleList([synthetic_store.get(role).model for role in
                                 ("vae_a", "mapping_scratch", "vae_b_scratch")])
    scale = float(plain.working["restored"].abs().max())
    tol = stack_tolerance(chain, scale, pixels=128 * 160, dtype=torch.float32, amplification=1)
    diff = (plain.working["restored"] - tiled.working["restored"]).abs().max().item()
    assert diff <= tol


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(0, 3, 64, 64), "empty"),
    (torch.zeros(1, 3, 12, 64), "too small"),
    (torch.zeros(1, 2, 64, 64), "channels"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "float"),
    (torch.full((1, 3, 64, 64), 2.0), r"\[0, 1\]"),
    (torch.zeros(3, 64, 64), r"\[B, C, H, W\]"),
])
def test_bad_inputs_get_clear_errors(restorer, bad, match) -> None:
    with pytest.raises(InputError, match=match):
        restorer.restore(bad, scratch="off")


def test_sixteen_bit_png_is_read_at_full_precision(tmp_path: Path) -> None:
    ramp = (np.arange(64 * 64 * 3, dtype=np.uint32) * 7 % 65536).astype(np.uint16)
    ramp = ramp.reshape(64, 64, 3)
    path = tmp_path / "scan16.png"
    cv2.imwrite(str(path), ramp[..., ::-1])
    img, info = read_image(path)
    assert info.bit_depth == 16 and img.shape == (1, 3, 64, 64)
    assert torch.equal(torch.round(img[0].permute(1, 2, 0) * 65535).to(torch.int32),
                       torch.from_numpy(ramp.astype(np.int32)))
    out = tmp_path / "out16.png"
    write_image(out, img, bit_depth=16)
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back[..., ::-1], ramp)


def test_sixteen_bit_tiff_gray(tmp_path: Path) -> None:
    gray = (np.linspace(0, 65535, 48 * 40)).astype(np.uint16).reshape(48, 40)
    path = tmp_path / "scan.tif"
    cv2.imwrite(str(path), gray)
    img, info = read_image(path)
    assert info.bit_depth == 16 and img.shape == (1, 1, 48, 40)
    assert abs(float(img.max()) - 1.0) < 1e-6


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[:5, :5] = 255                       # a white corner at the top left, as stored
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6                        # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)
    img, _ = read_image(path)
    assert img.shape == (1, 3, 30, 20)      # displayed upright: portrait
    assert float(img[0, :, :5, -5:].mean()) > 0.8   # the corner moved to the top right


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(InputError, match="decode"):
        read_image(bad)


def test_attention_progress_reaches_the_caller(restorer, photo) -> None:
    seen = []
    restorer.restore(photo[:, :3, :64, :80], scratch="on",
                     progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == (64 // 4) * (80 // 4)
