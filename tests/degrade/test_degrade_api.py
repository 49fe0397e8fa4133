"""degrade(): shapes, dtypes, ranges, determinism, batches, channels and input checks."""

from __future__ import annotations

import json

import pytest
import torch
from numeric_bounds import unit_roundoff

from oldphoto_core.degrade import DegradeConfig, DegradeResult, degrade
from oldphoto_core.errors import InputError


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_shapes_dtype_and_range(photo, channels):
    img = photo(batch=2, channels=channels, height=48, width=80)
    res = degrade(img, seed=3)
    assert isinstance(res, DegradeResult)
    assert res.image.shape == img.shape and res.image.dtype == img.dtype
    assert res.mask.shape == (2, 1, 48, 80) and res.mask.dtype == img.dtype
    assert 0.0 <= res.image.min() and res.image.max() <= 1.0
    assert set(res.mask.unique().tolist()) <= {0.0, 1.0}
    assert len(res.params) == 2
    json.dumps(res.params)  # JSON-serialisable, every item
    assert not torch.equal(res.image, img)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_returns_the_input_float_dtype(photo, dtype):
    img = photo(dtype=dtype)
    res = degrade(img, seed=1)
    assert res.image.dtype == dtype and res.mask.dtype == dtype
    ref = degrade(img.float(), seed=1)  # computed in float32 either way
    # the same float32 result, rounded once to dtype at the end: u(dtype) for values <= 1
    assert torch.allclose(res.image.float(), ref.image, rtol=0, atol=unit_roundoff(dtype))


def test_same_seed_same_bytes_other_seed_differs(photo):
    img = photo(batch=2)
    a, b = degrade(img, seed=11), degrade(img, seed=11)
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert a.params == b.params
    c = degrade(img, seed=12)
    assert not torch.equal(a.image, c.image)


def test_input_is_not_modified(photo):
    img = photo(channels=4)
    before = img.clone()
    degrade(img, seed=0)
    assert torch.equal(img, before)


def test_batch_items_get_independent_damage(photo):
    one = photo(batch=1)
    img = one.repeat(3, 1, 1, 1)  # three identical photos
    res = degrade(img, seed=5)
    assert not torch.equal(res.image[0], res.image[1])
    assert not torch.equal(res.mask[0], res.mask[2])
    assert res.params[0]["index"] == 0 and res.params[2]["index"] == 2
    assert res.params[0]["scratches"] != res.params[1]["scratches"]


def test_item_does_not_depend_on_its_batch(photo):
    img = photo(batch=3, seed=1)
    whole = degrade(img, seed=9)
    for i in range(3):
        alone = degrade(img[i:i + 1], seed=9, index_offset=i)
        assert torch.equal(alone.image[0], whole.image[i])
        assert torch.equal(alone.mask[0], whole.mask[i])
        assert alone.params[0] == whole.params[i]


def test_grayscale_damage_stays_grey(photo, heavy_damage):
    grey = photo(channels=1, seed=2)
    res = degrade(grey, seed=4, config=heavy_damage)
    assert res.image.shape == grey.shape
    assert res.mask.sum() > 0
    assert res.params[0]["channels"] == 1
    assert not res.params[0]["aging"]["sepia"]["applied"]
    # Default config (colour jitter, JPEG, …) works on one channel too.
    plan = degrade(grey, seed=4).params[0]["unstructured"]
    jitter = [s for s in plan if s["op"] == "color_jitter"]
    assert all(len(s["shifts_255"]) == 1 for s in jitter)


def test_rgba_alpha_passes_through_bit_exact(photo):
    img = photo(batch=2, channels=4)
    img[:, 3] = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0))
    res = degrade(img, seed=8)
    assert torch.equal(res.image[:, 3], img[:, 3])
    rgb = degrade(img[:, :3].contiguous(), seed=8)  # same damage as the RGB part alone
    assert torch.equal(res.image[:, :3], rgb.image)
    assert torch.equal(res.mask, rgb.mask)


def test_huge_seed_and_numpy_int(photo):
    import numpy as np

    img = photo()
    a = degrade(img, seed=2**64 - 1)
    b = degrade(img, seed=np.int64(7))
    assert a.params[0]["seed"] == 2**64 - 1 and b.params[0]["seed"] == 7


def test_values_within_tolerance_are_clamped(photo):
    img = photo()
    img[0, 0, 0, 0], img[0, 1, 0, 0] = -5e-4, 1 + 5e-4
    res = degrade(img, seed=0)
    assert 0.0 <= res.image.min() and res.image.max() <= 1.0


@pytest.mark.parametrize("bad, match", [
    (lambda: torch.rand(3, 64, 64), "4-D tensor"),
    (lambda: torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "floating-point"),
    (lambda: torch.rand(1, 2, 64, 64), r"1 \(grey\), 3 \(RGB\) or 4 \(RGBA\) channels, found 2"),
    (lambda: torch.rand(1, 64, 64, 3), "found 64"),
    (lambda: torch.rand(0, 3, 64, 64), "empty batch"),
    (lambda: torch.rand(1, 3, 15, 64), "height and width >= 16, found 15x64"),
    (lambda: torch.rand(1, 3, 64, 64) * 255, r"values in \[0, 1\]"),
    (lambda: torch.rand(1, 3, 64, 64) - 0.5, r"values in \[0, 1\]"),
    (lambda: torch.full((1, 3, 64, 64), float("nan")), r"values in \[0, 1\]"),
    (lambda: [[0.5]], "torch.Tensor"),
])
def test_rejects_bad_images(bad, match):
    with pytest.raises(InputError, match=match):
        degrade(bad(), seed=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": -1}, "seed to be an int >= 0"),
    ({"seed": 1.5}, "seed to be an int >= 0"),
    ({"seed": True}, "seed to be an int >= 0"),
    ({"seed": 0, "index_offset": -2}, "index_offset"),
    ({"seed": 0, "config": {"op_drop_prob": 0.3}}, "DegradeConfig"),
])
def test_rejects_bad_arguments(photo, kwargs, match):
    with pytest.raises(InputError, match=match):
        degrade(photo(), **kwargs)


def test_input_error_is_a_value_error(photo):
    with pytest.raises(ValueError):
        degrade(photo()[:, :2], seed=0)


def test_smallest_size_and_non_square(photo):
    res = degrade(photo(height=16, width=16), seed=1)
    assert res.image.shape == (1, 3, 16, 16)
    res = degrade(photo(height=16, width=120), seed=1, config=DegradeConfig(
        gaussian_blur_kernels=(7,), box_blur_kernels=(7,), op_drop_prob=0.0))
    assert res.image.shape == (1, 3, 16, 120)


def test_params_describe_every_stage(photo):
    p = degrade(photo(), seed=21).params[0]
    for key in ("seed", "index", "size", "channels", "paper", "aging", "scratches", "cracks",
                "dust", "creases", "elastic", "blend", "holes", "mask_threshold",
                "mask_fraction", "grain", "global_blur", "unstructured"):
        assert key in p, key
    assert sorted(s["op"] for s in p["unstructured"]) == sorted(DegradeConfig().unstructured_ops)
    assert set(p["blend"]) == {"scratches", "cracks", "dust", "creases"}


def test_input_that_requires_grad(photo):
    img = photo().requires_grad_()
    res = degrade(img, seed=0)
    assert not res.image.requires_grad and res.image.grad_fn is None
