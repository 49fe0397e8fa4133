"""``python -m training recipe``: photos with licences, steps in order, exact resume, the
assembled model set (manifest + data card) that the engine loads.

The default recipe's steps are run at toy sizes (a few steps, a few channels, small crops):
what is tested is the runner, not the learning.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from oldphoto_core.models import ModelStore
from oldphoto_core.pipeline import Restorer
from training.errors import TrainingError
from training.recipes import RECIPES, Recipe, Step, run_recipe
from training.recipes.photos import HELD_OUT, PHOTOS, TRAIN


def _toy(recipe: Recipe, **over) -> Recipe:
    steps = []
    for s in recipe.steps:
        opts = {**s.options, "steps": 3, "crop": 32, "batch": 2, "save_every": 1,
                "sample_every": 0, "log_every": 1,
                "width": 16 if s.stage == "mapping" else 8, **over.get(s.name, {})}
        steps.append(dataclasses.replace(s, options=opts))
    return dataclasses.replace(recipe, steps=tuple(steps), calibrate_max_side=64)


def _weights(out: Path) -> dict[str, dict]:
    """File -> its tensors as bytes (the header's key order is not stable across runs)."""
    from safetensors.torch import load_file
    return {p.name: {k: v.numpy().tobytes() for k, v in load_file(p).items()}
            for p in sorted((out / "models").glob("*.safetensors"))}


def test_photos_are_licensed_and_held_out_ones_never_train():
    assert {p.name for p in TRAIN}.isdisjoint(p.name for p in HELD_OUT)
    assert len(TRAIN) >= 8 and len(HELD_OUT) >= 3
    for p in PHOTOS:
        assert p.licence and p.origin and p.package
        assert any(k in p.licence for k in ("public domain", "CC0", "CC BY"))


def test_recipe_trains_assembles_and_resumes_exactly(tmp_path):
    toy = _toy(RECIPES["default"])
    full = tmp_path / "full"
    models = run_recipe(toy, full, workers=0, log=lambda _: None)
    assert models == full / "models"
    manifest = json.loads((models / "manifest.json").read_text())
    assert manifest["tone"] == "anchor"
    card = (models / "CARD.md").read_text()
    for p in PHOTOS:
        assert p.name in card and p.licence in card
    assert "python -m training recipe default" in card
    # a fine-tuned file counts the rounds it went through, and the card's training table the
    # steps it was fine-tuned from or trained against, shipped or not
    vae_b = next(line for line in card.splitlines() if line.startswith("| `VAE_B.safetensors`"))
    assert vae_b.endswith("| 3 + 3 |")
    scratch_mapping = next(line for line in card.splitlines()
                           if line.startswith("| `mapping_scratch.safetensors`"))
    assert scratch_mapping.endswith("| 3 + 3 |")
    for step in ("vae_clean", "vae_old", "detector", "mapping_scratch", "mapping_quality",
                 "vae_clean_ft", "mapping_quality_ft", "mapping_scratch_ft"):
        assert f"| `{step}` | `" in card, step
    # the detector's threshold: the best F1 on the training photos, said in the card
    from training.recipes.calibrate import THRESHOLDS
    assert manifest["scratch_threshold"] in THRESHOLDS
    assert f"threshold is {manifest['scratch_threshold']:.2f}" in card
    # the set loads strictly and restores, read from its manifest, in both paths
    store = ModelStore(models)
    assert set(store.files) == {"vae_a", "vae_b_quality", "vae_b_scratch", "mapping_quality",
                                "scratch_detector", "mapping_scratch"}
    # one clean-photo VAE decodes both paths: the scratch mapping was fine-tuned into its space
    assert manifest["roles"]["vae_b_scratch"] == manifest["roles"]["vae_b_quality"]
    assert Restorer(store).scratch_threshold == manifest["scratch_threshold"]
    assert manifest["auto_scratch"] is False and "takes the quality path" in card
    assert Restorer(store).restore(torch.full((1, 3, 32, 32), 0.5)).mode == "quality"
    for scratch in ("off", "on"):
        res = Restorer(store).restore(torch.full((1, 3, 32, 32), 0.5), scratch=scratch)
        assert res.images.shape == (1, 3, 32, 32)
        assert res.mode == {"off": "quality", "on": "scratch"}[scratch]

    # interrupted after two steps of vae_old, then run again: the same weights, bit for bit
    # (the recipe's first three steps: the runner's skip-and-continue is what is tested, and
    # the steps after them would only repeat it)
    parts = tmp_path / "parts"
    first = dataclasses.replace(toy, steps=toy.steps[:3])
    stop = _toy(RECIPES["default"], vae_old={"stop_after": 2})
    stop = dataclasses.replace(stop, steps=stop.steps[:3])
    assert run_recipe(stop, parts, workers=0, log=lambda _: None) is None
    assert not (parts / "runs" / "detector").exists()  # later steps waited
    logs: list[str] = []
    assert run_recipe(first, parts, workers=0, log=logs.append) == parts / "models"
    assert any("[vae_clean] done" in line for line in logs)
    assert any("continuing at step 2" in line for line in logs)
    resumed = _weights(parts)
    assert set(resumed) == {"VAE_A.safetensors", "scratch_detector.safetensors"}
    assert resumed == {name: w for name, w in _weights(full).items() if name in resumed}


def test_a_step_may_only_use_earlier_steps(tmp_path):
    bad = Recipe("bad", (Step("m", "mapping", {"vae_old": "@later", "vae_clean": "@later"}),
                         Step("later", "vae_clean", {})))
    with pytest.raises(TrainingError, match="no earlier step"):
        run_recipe(bad, tmp_path, workers=0, log=lambda _: None)
