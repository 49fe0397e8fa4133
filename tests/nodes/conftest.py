"""Fixtures of the node tests: the pack imported as ComfyUI imports it, tiny models, a models
folder, fake batches.

The pack is loaded by path from the repository's top-level ``__init__.py`` under the name
``oldphoto_pack`` (ComfyUI uses the folder path as module name), so ``oldphoto_pack.nodes`` is our
node package and nothing named ``nodes`` is put on ``sys.path``. Tests import its modules with
``from oldphoto_pack.nodes import ...``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from oldphoto_core.arch import (
    OldPhotoVAE,
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
    ScratchUNet,
    SPADEFaceGenerator,
)
from oldphoto_core.faces import Face
from oldphoto_core.loading import model_from_state_dict
from oldphoto_core.models import ROLES

REPO = Path(__file__).resolve().parents[2]
PACK = "oldphoto_pack"


def _import_pack():
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


_import_pack()

from oldphoto_pack.nodes import comfy_compat, loaders  # noqa: E402
from oldphoto_pack.nodes.all_in_one import _restorers, _scans  # noqa: E402
from oldphoto_pack.nodes.runtime import FaceDetectorHandle, Network, OldPhotoModel  # noqa: E402


@pytest.fixture(scope="session")
def pack():
    """The pack module as ComfyUI sees it (``NODE_CLASS_MAPPINGS`` ...)."""
    return sys.modules[PACK]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No ComfyUI; an empty models folder unless a test points OLDPHOTO_MODELS elsewhere;
    fresh caches; one thread."""
    assert not comfy_compat.HAVE_COMFY, "these tests run without ComfyUI"
    empty = tmp_path_factory.mktemp("empty_models")
    monkeypatch.setenv("OLDPHOTO_MODELS", str(empty))
    monkeypatch.setenv("OLDPHOTO_INSIGHTFACE", str(empty / "insightface"))
    monkeypatch.setenv("OLDPHOTO_DEVICE", "cpu")
    loaders.clear_caches()
    _scans.clear()
    _restorers.clear()
    comfy_compat.request_interrupt(False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead (and contention)
    yield
    torch.set_num_threads(threads)
    comfy_compat.request_interrupt(False)


# -- tiny networks (same code as the published ones, a few thousand parameters) ----------------

def _tiny_state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    nets = {
        "vae": OldPhotoVAE(channels=8),
        "mapping_quality": QualityMapping(latent_channels=8, width=16, n_blocks=1),
        "mapping_scratch": ScratchMapping(latent_channels=8, width=16, n_blocks=1),
        "mapping_hr": PatchAttentionMapping(latent_channels=8, width=16),
        "scratch": ScratchUNet(base=2),
        "face": SPADEFaceGenerator(base=4),
    }
    return {k: {n: t.detach().clone() for n, t in m.state_dict().items()}
            for k, m in nets.items()}


@pytest.fixture(scope="session")
def tiny_sds() -> dict[str, dict[str, torch.Tensor]]:
    return _tiny_state_dicts()


@pytest.fixture(scope="session")
def tiny(tiny_sds):
    """Descriptor per kind, built in memory (shared: tests must not change weights)."""
    return {k: model_from_state_dict(sd, source=f"tiny {k}") for k, sd in tiny_sds.items()}


@pytest.fixture
def handle(tiny):
    """``handle(key, name=..., face_size=...)`` -> the OldPhotoModel a loader would return."""
    def make(key: str, name: str | None = None, face_size: int | None = None) -> OldPhotoModel:
        return OldPhotoModel(Network(tiny[key]), name or f"{key}.pth", face_size=face_size)
    return make


# role -> tiny state dict key, for a published-layout folder
ROLE_SD = {"vae_a": "vae", "vae_b_quality": "vae", "vae_b_scratch": "vae",
           "mapping_quality": "mapping_quality", "mapping_scratch": "mapping_scratch",
           "mapping_hr": "mapping_hr", "scratch_detector": "scratch", "face_256": "face",
           "face_512": "face"}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, tiny_sds) -> Path:
    """Tiny checkpoints at the published paths, plus files that are not ours."""
    root = tmp_path_factory.mktemp("oldphoto_models")
    for role, key in ROLE_SD.items():
        path = root / ROLES[role].published_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = tiny_sds[key]
        torch.save({"model_state": sd} if role == "scratch_detector" else sd, path)
    (root / "junk.pth").write_bytes(b"not a checkpoint at all")
    torch.save({"foo.weight": torch.zeros(3)}, root / "other_network.pt")
    (root / "notes.txt").write_text("ignored")
    return root


@pytest.fixture
def use_models(monkeypatch, models_dir) -> Path:
    """Point the plain-Python models folder at :func:`models_dir`."""
    monkeypatch.setenv("OLDPHOTO_MODELS", str(models_dir))
    return models_dir


@pytest.fixture
def images() -> torch.Tensor:
    """A fake ComfyUI IMAGE batch ``[2, 48, 40, 3]`` in 0..1."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 48, 40, 3, generator=g)


@pytest.fixture
def progress(monkeypatch):
    """Record every progress bar the nodes create (their totals and positions)."""
    bars = []

    class Bar(comfy_compat._PlainProgressBar):
        def __init__(self, total, node_id=None):
            super().__init__(total, node_id)
            self.updates = []
            bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            super().update_absolute(value, total, preview)
            self.updates.append(self.current)

    monkeypatch.setattr(comfy_compat, "ProgressBar", Bar)
    return bars


@pytest.fixture
def oldphoto_logs(caplog):
    caplog.set_level(logging.INFO, logger="oldphoto")
    return caplog


class FakeDetector:
    """A face detector that finds one face at a fixed place (landmarks of a frontal face)."""

    name = "fake"

    def __init__(self, faces_per_image: int = 1) -> None:
        self.n = faces_per_image
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        h, w = image.shape[:2]
        out = []
        for k in range(self.n):
            cx, cy, s = w * (0.35 + 0.3 * k), h * 0.5, min(h, w) * 0.12
            lm = [(cx - s, cy - s * 0.6), (cx + s, cy - s * 0.6), (cx, cy),
                  (cx - s * 0.7, cy + s * 0.9), (cx + s * 0.7, cy + s * 0.9)]
            out.append(Face(box=(cx - 2 * s, cy - 2 * s, cx + 2 * s, cy + 2 * s), score=0.9,
                            landmarks=np.array(lm)))
        return out


@pytest.fixture
def fake_detector():
    def make(n: int = 1) -> FaceDetectorHandle:
        return FaceDetectorHandle(FakeDetector(n), "fake")
    return make
