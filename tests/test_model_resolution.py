"""Which model set is used: published checkpoints when found, else the bundled default set.

The bundled set here is a tiny random one (``tiny_bundled_set``); "published" checkpoints are
tiny networks of the same architectures written at the published paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oldphoto_core.arch import OldPhotoVAE
from oldphoto_core.cli.commands import main
from oldphoto_core.errors import CheckpointError, InputError
from oldphoto_core.io.images import write_image
from oldphoto_core.models import (
    BUNDLED_LABEL,
    ROLES,
    MissingModelsError,
    ModelStore,
    resolve_models,
)
from oldphoto_core.pipeline import Restorer


def _published(folder: Path, *roles: str) -> Path:
    """Tiny VAEs at the published paths of ``roles`` (all VAE roles)."""
    for role in roles:
        path = folder / ROLES[role].published_path
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(OldPhotoVAE(channels=8).state_dict(), path)
    return folder


def test_without_published_checkpoints_the_bundled_set_is_used(tiny_bundled_set):
    store = resolve_models()
    assert store.label == BUNDLED_LABEL
    assert store.files == tiny_bundled_set
    restorer = Restorer()
    assert restorer.store.label == BUNDLED_LABEL
    result = restorer.restore(torch.rand(1, 3, 48, 40), scratch="on")
    assert result.images.shape == (1, 3, 48, 40) and result.mode == "scratch"
    # the set's one clean VAE serves both decoder roles and is loaded once
    assert store.get("vae_b_quality") is store.get("vae_b_scratch")


def test_published_checkpoints_in_models_win(tiny_bundled_set):
    _published(Path("models"), "vae_a")
    store = resolve_models()
    assert store.label.startswith("checkpoints in models")
    assert set(store.files) == {"vae_a"}
    # never mixed with the bundled set: what the folder lacks is named, not filled in
    with pytest.raises(MissingModelsError, match="mapping_quality") as err:
        store.require(["vae_a", "mapping_quality", "vae_b_quality"])
    assert "oldphoto models download" in str(err.value)


def test_oldphoto_models_variable_comes_first(tiny_bundled_set, tmp_path, monkeypatch):
    _published(Path("models"), "vae_a")
    env = _published(tmp_path / "env", "vae_b_quality")
    monkeypatch.setenv("OLDPHOTO_MODELS", str(env))
    store = resolve_models()
    assert "$OLDPHOTO_MODELS" in store.label and set(store.files) == {"vae_b_quality"}


def test_an_explicit_folder_is_strict(tiny_bundled_set, tmp_path):
    folder = _published(tmp_path / "mine", "vae_a")
    store = resolve_models(folder)
    with pytest.raises(MissingModelsError) as err:
        store.require(["scratch_detector", "vae_a", "mapping_scratch", "vae_b_scratch"])
    listed = [line for line in str(err.value).splitlines() if line.startswith("  - ")]
    assert len(listed) == 3
    for part in ("FT_Epoch_latest.pt", "mapping_scratch", "VAE_B_scratch"):
        assert any(part in line for line in listed)
    # an explicit empty folder fails too, although a bundled set exists
    with pytest.raises(MissingModelsError):
        resolve_models(tmp_path / "empty").require(["vae_a"])


def test_the_bundled_set_says_what_it_lacks(tiny_bundled_set):
    with pytest.raises(MissingModelsError, match="oldphoto models download") as err:
        resolve_models().require(["vae_a", "mapping_hr"])
    assert BUNDLED_LABEL in str(err.value) and "HR" in str(err.value)


def test_no_set_anywhere_lists_the_files_to_fetch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OLDPHOTO_MODELS", raising=False)
    store = resolve_models()
    with pytest.raises(MissingModelsError, match="VAE_A_quality") as err:
        store.require(["vae_a"])
    assert "ships no bundled default models" in str(err.value)


def test_a_model_set_folder_is_read_from_its_manifest(tmp_path):
    model_sets = pytest.importorskip("model_sets")
    files = model_sets.write_tiny_set(tmp_path / "set")
    store = ModelStore(tmp_path / "set")
    assert store.files == files
    (tmp_path / "set" / "manifest.json").write_text(json.dumps({"roles": {"nope": "x"}}))
    with pytest.raises(CheckpointError, match="unknown roles"):
        ModelStore(tmp_path / "set")
    (tmp_path / "set" / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest"):
        ModelStore(tmp_path / "set")


def test_a_sets_detector_threshold_and_auto_policy_come_from_its_manifest(tmp_path):
    """A set's manifest may name its detector's threshold (a class-balanced detector reads
    high) and keep ``scratch="auto"`` on the quality path; an explicit threshold wins, a
    folder without a manifest keeps the reference's 0.4 and its auto path."""
    from oldphoto_core.models import auto_mode
    from oldphoto_core.pipeline import Restorer
    model_sets = pytest.importorskip("model_sets")
    model_sets.write_tiny_set(tmp_path / "set")
    manifest = tmp_path / "set" / "manifest.json"
    data = json.loads(manifest.read_text())
    store = ModelStore(tmp_path / "set")
    assert (store.scratch_threshold, store.auto_scratch) == (None, True)
    assert Restorer(store).scratch_threshold == 0.4 and auto_mode(store) == "auto"

    manifest.write_text(json.dumps({**data, "scratch_threshold": 0.8, "auto_scratch": False}))
    store = ModelStore(tmp_path / "set")
    assert Restorer(store).scratch_threshold == 0.8
    assert Restorer(store, scratch_threshold=0.5).scratch_threshold == 0.5
    for bad in (0, 1, 1.5):  # nothing or everything marked: a typo, not a choice
        with pytest.raises(InputError, match="scratch_threshold"):
            Restorer(store, scratch_threshold=bad)
    assert auto_mode(store) == "quality"
    result = Restorer(store).restore(torch.rand(1, 3, 32, 32))   # scratch="auto"
    assert result.mode == "quality"
    assert Restorer(store).restore(torch.rand(1, 3, 32, 32), scratch="on").mode == "scratch"

    for bad, what in (({"scratch_threshold": 1.5}, "scratch_threshold"),
                      ({"scratch_threshold": True}, "scratch_threshold"),
                      ({"auto_scratch": "no"}, "auto_scratch")):
        manifest.write_text(json.dumps({**data, **bad}))
        with pytest.raises(CheckpointError, match=what):
            ModelStore(tmp_path / "set")


def test_cli_says_which_set_it_used(tiny_bundled_set, capsys):
    write_image(Path("old.png"), torch.rand(1, 3, 40, 48))
    assert main(["restore", "old.png", "-o", "out"]) == 0
    err = capsys.readouterr().err
    assert f"models: {BUNDLED_LABEL}" in err
    assert "faces: off" in err  # the bundled set has no face model: not an error by default
    assert Path("out/old.png").is_file()
    assert main(["restore", "old.png", "-o", "out2", "--faces", "dlib"]) == 2
    assert "oldphoto models download" in capsys.readouterr().err
