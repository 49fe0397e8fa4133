"""Property tests: every drawn parameter stays within its (default or narrowed) range."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oldphoto_core.degrade import DegradeConfig, degrade, sample_unstructured
from oldphoto_core.degrade._random import Stream, item_rng

SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _in(value: float, bounds: tuple[float, float]) -> bool:
    lo, hi = bounds
    return lo <= value <= hi


def check_unstructured(plan: list[dict], cfg: DegradeConfig, channels: int) -> None:
    assert sorted(s["op"] for s in plan) == sorted(cfg.unstructured_ops)
    for s in plan:
        assert isinstance(s["applied"], bool)
        if s["op"] == "noise":
            assert _in(s["sigma_255"], cfg.noise_sigma_255)
        elif s["op"] == "gaussian_blur":
            assert s["kernel_size"] in cfg.gaussian_blur_kernels
            assert _in(s["sigma"], cfg.gaussian_blur_sigma)
        elif s["op"] == "jpeg":
            assert isinstance(s["quality"], int) and _in(s["quality"], cfg.jpeg_quality)
        elif s["op"] == "color_jitter":
            assert len(s["shifts_255"]) == channels
            assert all(_in(v, cfg.color_jitter_255) for v in s["shifts_255"])
        elif s["op"] == "box_blur":
            assert s["kernel_size"] in cfg.box_blur_kernels


def check_structured(p: dict, cfg: DegradeConfig) -> None:
    assert _in(len(p["scratches"]), cfg.scratch_count)
    for s in p["scratches"]:
        assert _in(s["width"], cfg.scratch_width) and _in(s["length"], cfg.scratch_length)
        assert _in(abs(s["curvature"]), cfg.scratch_curvature)
        assert _in(s["intensity"], cfg.scratch_intensity)
        assert 1 <= s["pieces_drawn"] <= s["pieces"]
    assert _in(len(p["cracks"]), cfg.crack_count)
    for c in p["cracks"]:
        assert _in(c["length"], cfg.crack_length) and _in(c["width"], cfg.crack_width)
        assert _in(c["intensity"], cfg.crack_intensity)
        assert _in(c["branches"], cfg.crack_branches)
    assert _in(p["dust"]["density"], cfg.dust_density)
    assert p["dust"]["specks"] + p["dust"]["fibres"] == p["dust"]["count"]
    assert _in(len(p["creases"]), cfg.crease_count)
    for c in p["creases"]:
        assert _in(c["band_width"], cfg.crease_band_width)
        assert _in(c["band_intensity"], cfg.crease_band_intensity)
        assert _in(c["core_width"], cfg.crease_core_width)
        assert _in(c["core_intensity"], cfg.crease_core_intensity)
    assert _in(p["elastic"]["alpha"], cfg.elastic_alpha)
    assert _in(p["elastic"]["sigma"], cfg.elastic_sigma)
    for b in p["blend"].values():
        assert b["mode"] in cfg.blend_modes and _in(b["opacity"], cfg.blend_opacity)
    assert _in(len(p["holes"]), cfg.hole_count)
    for h in p["holes"]:
        assert _in(h["radius"], cfg.hole_radius) and _in(h["feather"], cfg.hole_feather)
    assert _in(p["paper"]["brightness"], cfg.paper_brightness)
    assert _in(p["paper"]["warmth"], cfg.paper_warmth)
    assert _in(p["aging"]["vignette"]["strength"], cfg.vignette_strength)
    assert _in(p["aging"]["sepia"]["strength"], cfg.sepia_strength)
    assert _in(p["aging"]["fade"]["strength"], cfg.fade_strength)
    assert _in(p["grain"]["sigma_255"], cfg.grain_sigma_255)
    assert _in(p["grain"]["size"], cfg.grain_size)
    assert _in(p["global_blur"]["sigma"], cfg.global_blur_sigma)
    assert 0.0 <= p["mask_fraction"] <= 1.0


@FAST
@given(seed=SEEDS, channels=st.sampled_from([1, 3]))
def test_unstructured_defaults_in_range(seed, channels):
    cfg = DegradeConfig()
    check_unstructured(sample_unstructured(item_rng(seed, 0, Stream.UNSTRUCTURED), cfg, channels),
                       cfg, channels)


@st.composite
def float_subrange(draw, bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = bounds
    a, b = sorted(draw(st.floats(0.0, 1.0)) for _ in range(2))
    return (lo + a * (hi - lo), lo + b * (hi - lo))


@st.composite
def int_subrange(draw, bounds: tuple[int, int]) -> tuple[int, int]:
    a, b = sorted(draw(st.integers(*bounds)) for _ in range(2))
    return (a, b)


@st.composite
def narrowed_unstructured(draw) -> DegradeConfig:
    d = DegradeConfig()
    ops = draw(st.lists(st.sampled_from(d.unstructured_ops), unique=True))
    return DegradeConfig(
        unstructured_ops=tuple(ops),
        op_drop_prob=draw(st.floats(0.0, 1.0)),
        noise_sigma_255=draw(float_subrange(d.noise_sigma_255)),
        gaussian_blur_kernels=tuple(draw(st.lists(st.sampled_from((3, 5, 7)), min_size=1,
                                                  unique=True))),
        gaussian_blur_sigma=draw(float_subrange(d.gaussian_blur_sigma)),
        jpeg_quality=draw(int_subrange(d.jpeg_quality)),
        color_jitter_255=draw(float_subrange(d.color_jitter_255)),
        box_blur_kernels=tuple(draw(st.lists(st.sampled_from((3, 5, 7)), min_size=1,
                                             unique=True))),
    )


@FAST
@given(seed=SEEDS, cfg=narrowed_unstructured())
def test_unstructured_narrowed_ranges_respected(seed, cfg):
    check_unstructured(sample_unstructured(item_rng(seed, 3, Stream.UNSTRUCTURED), cfg, 3), cfg, 3)


def test_drop_probability_and_random_order():
    cfg = DegradeConfig()
    plans = [sample_unstructured(item_rng(s, 0, Stream.UNSTRUCTURED), cfg, 3) for s in range(1500)]
    applied = [s["applied"] for plan in plans for s in plan]
    # 7500 Bernoulli(0.7) draws: std of the mean is 0.0053; allow 4 std.
    assert abs(sum(applied) / len(applied) - 0.7) < 0.022
    firsts = {plan[0]["op"] for plan in plans}
    assert firsts == set(cfg.unstructured_ops)  # every op comes first sometimes
    orders = {tuple(s["op"] for s in plan) for plan in plans}
    assert len(orders) > 60  # of 120 permutations


@pytest.mark.parametrize("p, expected", [(0.0, True), (1.0, False)])
def test_drop_probability_extremes(p, expected):
    cfg = DegradeConfig(op_drop_prob=p)
    for seed in range(50):
        plan = sample_unstructured(item_rng(seed, 0, Stream.UNSTRUCTURED), cfg, 3)
        assert all(s["applied"] is expected for s in plan)


@FAST
@given(seed=SEEDS, channels=st.sampled_from([1, 3]))
def test_degrade_defaults_in_range(photo, seed, channels):
    cfg = DegradeConfig()
    p = degrade(photo(channels=channels, height=32, width=32), seed=seed).params[0]
    check_structured(p, cfg)
    check_unstructured(p["unstructured"], cfg, channels)


@st.composite
def narrowed_structured(draw) -> DegradeConfig:
    d = DegradeConfig()
    floats = ["scratch_width", "scratch_length", "scratch_curvature", "scratch_intensity",
              "crack_width", "crack_length", "crack_intensity", "dust_density",
              "crease_band_width", "crease_band_intensity", "crease_core_width",
              "crease_core_intensity", "elastic_alpha", "elastic_sigma", "blend_opacity",
              "hole_radius", "hole_feather", "paper_brightness", "paper_warmth",
              "vignette_strength", "sepia_strength", "fade_strength", "grain_sigma_255",
              "grain_size", "global_blur_sigma"]
    changes = {name: draw(float_subrange(getattr(d, name))) for name in floats}
    for name in ("scratch_count", "crack_count", "crack_branches", "crease_count",
                 "hole_count"):
        changes[name] = draw(int_subrange(getattr(d, name)))
    changes["blend_modes"] = tuple(draw(st.lists(st.sampled_from(d.blend_modes), min_size=1,
                                                 unique=True)))
    return d.replace(**changes)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=SEEDS, cfg=narrowed_structured())
def test_degrade_narrowed_structured_ranges_respected(photo, seed, cfg):
    res = degrade(photo(height=32, width=40), seed=seed, config=cfg)
    check_structured(res.params[0], cfg)
    assert 0.0 <= res.image.min() and res.image.max() <= 1.0


def test_streams_are_independent(photo):
    """Narrowing one op's range moves only that op's draws."""
    img = photo()
    a = degrade(img, seed=4).params[0]
    b = degrade(img, seed=4, config=DegradeConfig(noise_sigma_255=(5.0, 5.0),
                                                  scratch_count=(0, 0))).params[0]
    for key in ("cracks", "dust", "creases", "holes", "blend", "paper", "aging", "grain"):
        assert a[key] == b[key], key
    assert [s["op"] for s in a["unstructured"]] == [s["op"] for s in b["unstructured"]]


def test_scratches_can_be_vertical(photo):
    cfg = DegradeConfig(scratch_vertical_prob=1.0, scratch_count=(3, 3))
    for seed in range(5):
        for s in degrade(photo(height=32, width=32), seed=seed, config=cfg).params[0]["scratches"]:
            assert s["vertical"] and abs(s["angle"] - math.pi / 2) < 0.5


def test_degrade_noise_std_matches_drawn_sigma(photo):
    cfg = DegradeConfig(unstructured_ops=("noise",), op_drop_prob=0.0, scratch_count=(0, 0),
                        crack_count=(0, 0), dust_density=(0.0, 0.0), crease_count=(0, 0),
                        hole_count=(0, 0), vignette_prob=0.0, sepia_prob=0.0, fade_prob=0.0,
                        grain_sigma_255=(0.0, 0.0), global_blur_prob=0.0,
                        noise_sigma_255=(5.0, 20.0))
    img = torch.full((1, 3, 128, 128), 0.5)
    res = degrade(img, seed=6, config=cfg)
    sigma = res.params[0]["unstructured"][0]["sigma_255"]
    # statistical: the sample std of 49152 draws is within 1/sqrt(2 n) = 0.3 % (1 sigma)
    assert float((res.image - img).std() * 255) == pytest.approx(sigma, rel=0.03)


def test_point_ranges_give_exactly_those_values(photo):
    d = DegradeConfig()
    point = {name: (getattr(d, name)[1],) * 2 for name in (
        "noise_sigma_255", "gaussian_blur_sigma", "jpeg_quality", "color_jitter_255",
        "scratch_count", "scratch_width", "scratch_length", "scratch_intensity", "crack_count",
        "crack_length", "crease_count", "crease_core_intensity", "hole_count", "hole_radius",
        "blend_opacity", "grain_sigma_255")}
    cfg = d.replace(**point, gaussian_blur_kernels=(5,), blend_modes=("lighten",))
    p = degrade(photo(height=48, width=48), seed=1, config=cfg).params[0]
    check_structured(p, cfg)
    check_unstructured(p["unstructured"], cfg, 3)
    assert len(p["scratches"]) == d.scratch_count[1]
    assert {s["length"] for s in p["scratches"]} == {d.scratch_length[1]}
    assert {b["opacity"] for b in p["blend"].values()} == {1.0}
    assert {b["mode"] for b in p["blend"].values()} == {"lighten"}
    jitter = next(s for s in p["unstructured"] if s["op"] == "color_jitter")
    assert jitter["shifts_255"] == [20.0, 20.0, 20.0]
