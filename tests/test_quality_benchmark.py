"""Smoke test of ``benchmarks/quality.py`` on a 96x96 crop of a held-out photo, tiny model set.

The benchmark is a script, not a package module, so it is imported by path. Its numbers mean
nothing with random weights; what is checked is that they are defined and in range, that the
detector's mask is reproduced exactly as the restoration thresholds it, and that the damaged
input's PSNR equals an independent float64 computation within a worst-case rounding bound.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from numeric_bounds import gamma, unit_roundoff

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    """``benchmarks/quality.py`` as a module (absolute path: the fixture below changes cwd)."""
    spec = importlib.util.spec_from_file_location("oldphoto_quality_benchmark",
                                                  REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def psnr_bound(damaged: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR in float64 from the 8-bit images, and the worst-case error of kornia's float32 one.

    Float32 path, per value: ``x/255`` (1 rounding each), ``x - y`` (1), squared (1); then a
    sum of N terms (``gamma(N - 1)`` of the sum of magnitudes), ``/ N``, ``1 / mse`` (2).
    The conversions perturb the difference by at most ``gamma(2) (|x| + |y|)`` =: ``e``, so
    ``|d^2 - d'^2| <= e (2|d| + e)``; the remaining roundings act on the computed squares,
    bounded by ``gamma(N + 3)`` of their sum. ``10 log10`` turns a relative error ``r`` of the
    ratio into at most ``10/ln 10 * -ln(1 - r)`` dB, and log10 and the product add
    ``gamma(2)`` of the result.
    """
    x, y = clean.astype(np.float64) / 255, damaged.astype(np.float64) / 255
    d = x - y
    n = d.size
    mse = float(np.mean(d * d))
    e = gamma(2) * (np.abs(x) + np.abs(y))
    conv = float(np.sum(e * (2 * np.abs(d) + e))) / n
    squares = float(np.sum((np.abs(d) + e) ** 2)) / n
    r = (conv + gamma(n + 3) * squares) / mse
    psnr = 10 * math.log10(1 / mse)
    return psnr, 10 / math.log(10) * -math.log1p(-r) + gamma(2) * abs(psnr) + 4 * unit_roundoff()


def test_evaluate_pair_tiny(tiny_bundled_set, quality):
    from oldphoto_core.models import BUNDLED_LABEL, resolve_models
    from oldphoto_core.pipeline import Restorer
    from training.recipes.photos import HELD_OUT, load_photo

    store = resolve_models()
    assert store.label == BUNDLED_LABEL
    restorer = Restorer(store)
    photo = load_photo(HELD_OUT[0])
    assert photo.dtype == np.uint8 and photo.shape[2] == 3
    crop = np.ascontiguousarray(photo[60:156, 180:276])  # 96x96
    row = quality.evaluate_pair(crop, 1, restorer, scratch="on")
    images = row.pop("images")

    assert set(images) == {"clean", "damaged", "restored", "baseline"}
    for img in images.values():
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    assert row["mode"] == "scratch"
    assert row["mask_agrees"] is True
    assert 0 < row["gt_mask_fraction"] < 1, "seed 1 must damage this crop (AUC is defined)"
    for name in ("damaged", "restored", "baseline", "ceiling"):
        assert math.isfinite(row[f"{name}_psnr"]) and row[f"{name}_psnr"] > 0, name
        assert -1 <= row[f"{name}_ssim"] <= 1, name
    assert 0 <= row["auc"] <= 1
    assert math.isnan(row["f1"]) or 0 <= row["f1"] <= 1
    assert 0 < row["visible_mask_fraction"] <= row["gt_mask_fraction"]
    assert 0 <= row["auc_visible"] <= 1
    # the visible mask is part of the drawn one: marking it exactly finds that share of the
    # positives and no negative, and the hidden positives tie with the negatives
    share = row["visible_mask_fraction"] / row["gt_mask_fraction"]
    assert row["auc_cap"] == pytest.approx(0.5 + 0.5 * share, abs=1e-9)
    assert math.isnan(row["f1_visible"]) or 0 <= row["f1_visible"] <= 1
    for key in ("detected_mask_fraction", "used_mask_fraction"):
        assert 0 <= row[key] <= 1
    assert row["beats_baseline"] == (row["restored_psnr"] > row["baseline_psnr"])

    expected, tol = psnr_bound(images["damaged"], images["clean"])
    assert abs(row["damaged_psnr"] - expected) <= tol, (row["damaged_psnr"], expected, tol)
    assert tol < 0.01  # the bound is tight enough to catch a wrong peak or a wrong mean


def test_the_ceiling_is_the_clean_vae_reconstruction_toned_like_the_restoration(
        tiny_bundled_set, quality):
    """quality_ceiling decodes the clean-photo VAE's latent of the clean photo with the
    restorer's tone: for a tone that ignores the input ('none') it is the VAE's plain
    reconstruction, whatever the damaged photo; 'anchor' takes the damaged photo's tone."""
    import torch

    from oldphoto_core.pipeline import Restorer
    from oldphoto_core.stages import decode_clean, encode_old
    g = torch.Generator().manual_seed(0)
    clean, damaged = torch.rand(2, 1, 3, 32, 40, generator=g)
    plain = Restorer(tone="none")
    vae_b = plain.store.get("vae_b_quality")
    lat = encode_old(clean, vae_b)
    from dataclasses import replace
    expected = decode_clean(replace(lat, domain="clean"), vae_b, tone="none")
    assert torch.equal(quality.quality_ceiling(clean, damaged, plain), expected)
    anchored = Restorer(tone="anchor")
    a = quality.quality_ceiling(clean, damaged, anchored)
    b = quality.quality_ceiling(clean, damaged * 0.5, anchored)
    assert a.shape == clean.shape and not torch.equal(a, b)


def test_auc_ranks_matches_sklearn(quality):
    """The numpy fallback gives scikit-learn's AUC, ties included (the map is upsampled)."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.random(2000) < 0.2
    score = np.round(rng.random(2000) * 0.5 + 0.3 * truth, 1)  # coarse: many ties
    assert quality.roc_auc_ranks(truth, score) == pytest.approx(
        sklearn_metrics.roc_auc_score(truth, score), abs=1e-12)
    assert math.isnan(quality.roc_auc_ranks(np.zeros(5, bool), np.arange(5.0)))


def test_fit_max_side_antialiased_downscale_only(quality):
    img = np.zeros((300, 200, 3), np.uint8)
    assert quality.fit_max_side(img, 150).shape == (150, 100, 3)
    assert quality.fit_max_side(img, 512) is img
    assert quality.fit_max_side(img, 0) is img


@pytest.fixture
def quality_only_set(tiny_bundled_set, tmp_path) -> Path:
    """A copy of the tiny set without detector or scratch mapping (a quality-only set)."""
    import json
    import shutil

    folder = tmp_path / "quality_only"
    folder.mkdir()
    roles = {r: tiny_bundled_set[r].name for r in ("vae_a", "vae_b_quality", "mapping_quality")}
    for role, name in roles.items():
        shutil.copy(tiny_bundled_set[role], folder / name)
    (folder / "manifest.json").write_text(json.dumps({"set": "q", "roles": roles,
                                                      "tone": "anchor"}))
    return folder


def test_a_set_without_a_detector_is_benchmarked_with_nlm_alone(quality_only_set, quality):
    """A set without a detector: the benchmark still restores and scores the
    images, leaves the detector's figures undefined and gives the baseline no mask."""
    from oldphoto_core.models import resolve_models
    from oldphoto_core.pipeline import Restorer
    from training.recipes.photos import HELD_OUT, load_photo

    restorer = Restorer(resolve_models(str(quality_only_set)))
    assert "scratch_detector" not in restorer.store
    crop = np.ascontiguousarray(load_photo(HELD_OUT[0])[60:156, 180:276])
    row = quality.evaluate_pair(crop, 1, restorer)
    images = row.pop("images")
    assert row["mode"] == "quality" and row["used_mask_fraction"] == 0
    for key in ("auc", "f1", "auc_visible", "f1_visible", "detected_mask_fraction"):
        assert math.isnan(row[key]), key
    assert 0 < row["gt_mask_fraction"] < 1
    assert np.array_equal(images["baseline"], quality.baseline(images["damaged"],
                                                               np.zeros((96, 96))))
    for name in ("damaged", "restored", "baseline", "ceiling"):
        assert math.isfinite(row[f"{name}_psnr"]), name


def test_samples_sheet_without_a_detector(quality_only_set, quality, tmp_path, capsys):
    """``--samples`` with a set that has no detector writes the sheet, baseline unmasked."""
    from PIL import Image

    scans = tmp_path / "scans"
    scans.mkdir()
    Image.fromarray(np.full((40, 52, 3), 120, np.uint8)).save(scans / "a.png")
    out = tmp_path / "out"
    quality.main(["--models", str(quality_only_set), "--samples", str(scans), "--out", str(out)])
    assert (out / "samples_sheet.png").is_file()
    printed = capsys.readouterr().out
    assert "no scratch detector in this set" in printed and "a.png: 52x40 quality" in printed
