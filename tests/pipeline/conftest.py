"""Synthetic published weights for pipeline tests, built once per session.

Which synthetic file stands for which published checkpoint is read from the kit itself: each
manifest names its published path, ``index.json`` its seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oldphoto_core import model_from_state_dict
from oldphoto_core.models import ROLES, ModelStore

_BY_PUBLISHED_PATH = {r.published_path: r.name for r in ROLES.values()}


def _kit_roles(parity: Path) -> dict[str, tuple[Path, int]]:
    index = json.loads((parity / "index.json").read_text())
    out = {}
    for name, seed in index["seeds"].items():
        manifest = parity / "manifests" / f"{name}.json"
        published = json.loads(manifest.read_text())["checkpoint"]["path"]
        out[_BY_PUBLISHED_PATH[published]] = (manifest, seed)
    return out


@pytest.fixture(scope="session")
def synthetic_state_dicts(parity: Path, synth) -> dict[str, dict[str, torch.Tensor]]:
    """role -> synthetic state dict, for every global-restoration role (faces excluded)."""
    return {role: synth(manifest, seed) for role, (manifest, seed) in _kit_roles(parity).items()
            if not role.startswith("face")}


@pytest.fixture(scope="session")
def synthetic_store(synthetic_state_dicts) -> ModelStore:
    """A ModelStore holding the synthetic models (nothing on disk)."""
    store = ModelStore("/nonexistent-oldphoto-models")
    for role, sd in synthetic_state_dicts.items():
        store.put(role, model_from_state_dict(sd, source=f"synthetic {role}"))
    return store


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """Small random networks of the published architectures (width 8-16) in the published
    layout: the command line recognises them by content as it does the real files, and a
    subprocess loads them in a fraction of a second."""
    from oldphoto_core.arch import OldPhotoVAE, ScratchUNet
    from oldphoto_core.arch.mapping import QualityMapping, ScratchMapping
    torch.manual_seed(0)
    latent = 8
    nets = {"vae_a": OldPhotoVAE(channels=latent), "vae_b_quality": OldPhotoVAE(channels=latent),
            "vae_b_scratch": OldPhotoVAE(channels=latent),
            "mapping_quality": QualityMapping(latent_channels=latent, width=16, n_blocks=1),
            "mapping_scratch": ScratchMapping(latent_channels=latent, width=16, n_blocks=1),
            "scratch_detector": ScratchUNet(base=4)}
    root = tmp_path_factory.mktemp("tiny-models")
    for role, net in nets.items():
        path = root / ROLES[role].published_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = net.state_dict()
        torch.save({"model_state": sd} if role == "scratch_detector" else sd, path)
    return root
