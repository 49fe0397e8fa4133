"""The single ops: each does what its drawn parameters say (functional level and via degrade)."""

from __future__ import annotations

import cv2
import kornia
import numpy as np
import pytest
import torch
from numeric_bounds import filter_bound, gamma

from oldphoto_core.degrade import (
    DegradeConfig,
    add_gaussian_noise,
    apply_unstructured,
    blend_texture,
    box_blur,
    color_jitter,
    degrade,
    draw_cracks,
    draw_creases,
    draw_dust,
    draw_holes,
    draw_scratches,
    elastic_distort,
    film_grain,
    gaussian_blur,
    jpeg_compress,
    paper_texture,
    paper_tone,
    sepia,
    vignette,
)
from oldphoto_core.errors import InputError

ONLY = dict(scratch_count=(0, 0), crack_count=(0, 0), dust_density=(0.0, 0.0),
            crease_count=(0, 0), hole_count=(0, 0), vignette_prob=0.0, sepia_prob=0.0,
            fade_prob=0.0, grain_sigma_255=(0.0, 0.0), global_blur_prob=0.0, op_drop_prob=0.0)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("k, sigma", [(3, 1.0), (5, 2.5), (7, 5.0)])
def test_gaussian_blur_opencv_path_equals_kornia(photo, k, sigma):
    img = photo(batch=2, height=40, width=52)
    ref = kornia.filters.gaussian_blur2d(img, (k, k), (sigma, sigma))
    # two float32 separable filters with their own kernel weights: each within the bound
    tol = 2 * filter_bound(img, torch.ones(k))
    assert torch.allclose(gaussian_blur(img, k, sigma), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_box_blur_opencv_path_equals_kornia(photo, k):
    img = photo(channels=1, height=33, width=47)
    # OpenCV slides a running sum along rows and columns; kornia sums each window
    tol = filter_bound(img, torch.ones(k), running_sum=True) + filter_bound(img, torch.ones(k))
    assert torch.allclose(box_blur(img, k), kornia.filters.box_blur(img, (k, k)), rtol=0,
                          atol=tol)


def test_blurs_fit_tiny_images():
    img = torch.rand(1, 3, 16, 16)
    assert gaussian_blur(img, 63, 10.0).shape == img.shape
    assert box_blur(img, 63).shape == img.shape


def test_jpeg_is_a_real_encoder_round_trip(photo):
    img = photo(height=48, width=64, seed=3)
    out = jpeg_compress(img, 50)
    u8 = (img[0] * 255).round().byte().permute(1, 2, 0).numpy()
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 50])
    ref = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert torch.equal((out[0] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(ref))
    noisy = (img + 0.1 * torch.rand(img.shape, generator=torch.Generator().manual_seed(0)))
    noisy = noisy.clamp(0, 1)
    err = [(jpeg_compress(noisy, q) - noisy).abs().mean() for q in (10, 50, 95)]
    assert err[0] > err[1] > err[2] > 0


def test_jpeg_grey_and_rejects_rgba(photo):
    grey = photo(channels=1)
    assert jpeg_compress(grey, 40).shape == grey.shape
    with pytest.raises(InputError, match="1 or 3 channels, found 4"):
        jpeg_compress(photo(channels=4), 40)


def test_color_jitter_shifts_each_channel(photo):
    img = photo()
    out = color_jitter(img, [10.0, -20.0, 0.0])
    expected = (img + torch.tensor([10, -20, 0]).view(1, 3, 1, 1) / 255).clamp(0, 1)
    # shifts rounded to float32 by different routes (1 ulp apart at most), one sum each
    assert torch.allclose(out, expected, rtol=0, atol=gamma(3))
    with pytest.raises(InputError, match="expected 3 shifts"):
        color_jitter(img, [1.0])


def test_noise_std_and_determinism():
    img = torch.full((1, 3, 96, 96), 0.5)
    a = add_gaussian_noise(img, 25.5, rng(1))
    # statistical: the sample std of 27648 draws is within 1/sqrt(2 n) = 0.4 % (1 sigma)
    assert float((a - img).std()) == pytest.approx(0.1, rel=0.03)
    assert torch.equal(a, add_gaussian_noise(img, 25.5, rng(1)))
    assert not torch.equal(a, add_gaussian_noise(img, 25.5, rng(2)))


def test_apply_unstructured_skips_dropped_ops_and_follows_the_order(photo):
    img = photo()
    plan = [{"op": "color_jitter", "applied": False, "shifts_255": [20.0, 20.0, 20.0]}]
    assert torch.equal(apply_unstructured(img, plan, rng()), img)
    a = [{"op": "color_jitter", "applied": True, "shifts_255": [60.0, 60.0, 60.0]},
         {"op": "jpeg", "applied": True, "quality": 40}]
    assert not torch.equal(apply_unstructured(img, a, rng()),
                           apply_unstructured(img, a[::-1], rng()))
    with pytest.raises(InputError, match="unknown op"):
        apply_unstructured(img, [{"op": "sharpen", "applied": True}], rng())


@pytest.mark.parametrize("op", ["gaussian_blur", "jpeg", "color_jitter", "box_blur"])
def test_degrade_applies_the_params_it_reports(photo, op):
    """Through degrade, the single op with its logged parameters reproduces the output."""
    img = photo(height=40, width=40, seed=1)
    res = degrade(img, seed=13, config=DegradeConfig(unstructured_ops=(op,), **ONLY))
    step = res.params[0]["unstructured"][0]
    assert step["op"] == op and step["applied"]
    expected = {
        "gaussian_blur": lambda: gaussian_blur(img, step.get("kernel_size", 0),
                                               step.get("sigma", 0)),
        "jpeg": lambda: jpeg_compress(img, step.get("quality", 0)),
        "color_jitter": lambda: color_jitter(img, step.get("shifts_255", [])),
        "box_blur": lambda: box_blur(img, step.get("kernel_size", 0)),
    }[op]()
    # no other op is enabled: degrade applies this one function to the same float32 values
    assert torch.equal(res.image, expected)


@pytest.mark.parametrize("mode", ["screen", "lighten", "addition"])
def test_blend_modes(mode):
    base = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    tex = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    colour = torch.tensor([1.0, 0.9, 0.8])
    t = tex * colour.view(1, 3, 1, 1)
    full = {"screen": 1 - (1 - base) * (1 - t), "lighten": torch.maximum(base, t),
            "addition": (base + t).clamp(max=1)}[mode]
    # the same formula, then base + opacity (blended - base): two more roundings (values <= 1)
    assert torch.allclose(blend_texture(base, tex, colour, mode, 1.0), full, rtol=0,
                          atol=gamma(4))
    half = blend_texture(base, tex, colour, mode, 0.5)
    # vs 0.5 (base + full): two roundings on each side more
    assert torch.allclose(half, 0.5 * (base + full), rtol=0, atol=gamma(8))
    # the paper's modes only lighten; screen's 1 - (1 - b)(1 - t) may round below b by 3 u
    assert (half >= base - gamma(3)).all()
    assert torch.equal(blend_texture(base, torch.zeros_like(tex), colour, mode, 1.0), base)
    with pytest.raises(InputError, match="mode"):
        blend_texture(base, tex, colour, "multiply", 1.0)


def test_vignette_sepia_and_grain():
    img = torch.full((1, 3, 33, 33), 0.8)
    v = vignette(img, 0.5)
    # approx's default rel=1e-6 > gamma(10): a handful of float32 operations per pixel
    assert v[0, 0, 16, 16] == pytest.approx(0.8) and v[0, 0, 0, 0] == pytest.approx(0.4)
    s = sepia(torch.full((1, 3, 4, 4), 0.5), 1.0)
    assert s[0, 0, 0, 0] > s[0, 1, 0, 0] > s[0, 2, 0, 0]  # warm
    with pytest.raises(InputError, match="3 channels"):
        sepia(torch.rand(1, 1, 4, 4), 0.5)
    g = film_grain(torch.full((1, 3, 128, 128), 0.5), 12.75, 1.0, rng(0))
    # statistical: 16384 grain values, smoothed (fewer independent ones): 5 % is several sigma
    assert float((g - 0.5).std()) == pytest.approx(0.05, rel=0.05)
    assert torch.equal(g[:, 0], g[:, 2])  # monochrome


def test_textures_are_drawn_as_reported():
    cfg = DegradeConfig(scratch_count=(3, 3), crack_count=(2, 2), crease_count=(1, 1),
                        dust_density=(300.0, 300.0), hole_count=(2, 2))
    scratches, ps = draw_scratches(rng(1), 96, 128, cfg)
    cracks, pc = draw_cracks(rng(2), 96, 128, cfg)
    creases, pk = draw_creases(rng(3), 96, 128, cfg)
    dust, pd = draw_dust(rng(4), 96, 128, cfg)
    holes, ph = draw_holes(rng(5), 96, 128, cfg)
    assert len(ps) == 3 and len(pc) == 2 and len(pk) == 1 and len(ph) == 2
    assert pd["count"] == round(300 * 96 * 128 / 512**2)
    for layer in (scratches, cracks, creases, dust):
        assert layer.dtype == np.uint8 and layer.shape == (96, 128) and layer.max() > 0
    assert holes.dtype == np.float32 and 0 <= holes.min() and holes.max() <= 1
    empty, none = draw_scratches(rng(1), 96, 128, cfg.replace(scratch_count=(0, 0)))
    assert none == [] and empty.max() == 0
    assert np.array_equal(draw_scratches(rng(1), 96, 128, cfg)[0], scratches)


def test_elastic_and_paper():
    layers = np.zeros((64, 64, 4), np.uint8)
    layers[30:34, :, 0] = 255
    assert np.array_equal(elastic_distort(layers, rng(), 0.0, 10.0), layers)
    warped = elastic_distort(layers, rng(), 3.0, 10.0)
    assert warped.shape == layers.shape and warped.dtype == np.uint8
    assert not np.array_equal(warped, layers) and warped[..., 1:].max() == 0
    tone = paper_tone(0.9, 0.5, 3)
    assert tone[0] > tone[1] > tone[2]  # yellowed
    paper = paper_texture(rng(), 40, 50, tone)
    assert paper.shape == (3, 40, 50) and 0 <= paper.min() and paper.max() <= 1
    assert paper_tone(0.9, 0.5, 1).shape == (1,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(photo, structured_only):
    img = photo(batch=2, height=96, width=80)
    cpu = degrade(img, seed=5, config=structured_only.replace(
        unstructured_ops=("noise", "color_jitter", "gaussian_blur", "box_blur")))
    gpu = degrade(img.cuda(), seed=5, config=structured_only.replace(
        unstructured_ops=("noise", "color_jitter", "gaussian_blur", "box_blur")))
    assert gpu.image.is_cuda and gpu.params == cpu.params
    # same noise; kornia's blurs vs OpenCV's (the running-sum box filter the loosest), each
    # op's bound added up; the mask thresholds float values: ties may flip (< 0.1 %)
    k7 = torch.ones(7)
    tol = 3 * filter_bound(img, k7) + filter_bound(img, k7, running_sum=True) + gamma(16)
    assert torch.allclose(gpu.image.cpu(), cpu.image, rtol=0, atol=tol)
    assert (gpu.mask.cpu() != cpu.mask).float().mean() < 1e-3
    full = degrade(img.cuda(), seed=5)
    assert full.image.is_cuda and torch.equal(full.image, degrade(img.cuda(), seed=5).image)
