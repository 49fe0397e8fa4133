"""The Restorer runs the face stage after the global restoration, with models from the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from oldphoto_core import model_from_state_dict
from oldphoto_core.arch import SPADEFaceGenerator
from oldphoto_core.faces import Face
from oldphoto_core.models import ModelStore
from oldphoto_core.pipeline import Restorer


class OneFace:
    """A detector that always reports the same plausible face (eyes above the mouth)."""

    name = "fixed"

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        cx, cy, s = w / 2, h / 2, min(h, w) / 4
        points = [[cx - s / 2, cy - s / 3], [cx + s / 2, cy - s / 3], [cx, cy],
                  [cx - s / 3, cy + s / 2], [cx + s / 3, cy + s / 2]]
        return [Face(box=(cx - s, cy - s, cx + s, cy + s), score=1.0, landmarks=points)]


def test_faces_are_enhanced_and_blended(synthetic_store: ModelStore, parity: Path) -> None:
    torch.manual_seed(0)
    face_model = model_from_state_dict(SPADEFaceGenerator(base=4).state_dict(), source="tiny")
    store = ModelStore.from_files({})
    for role in ("vae_a", "mapping_quality", "vae_b_quality"):
        store.put(role, synthetic_store.get(role))
    store.put("face_256", face_model)
    image = torch.rand(1, 3, 96, 112)
    restorer = Restorer(store)
    plain = restorer.restore(image, scratch="off")
    with_faces = restorer.restore(image, scratch="off", faces="dlib", face_detector=OneFace())
    assert len(with_faces.faces) == 1 and len(with_faces.faces[0]) == 1
    assert with_faces.faces[0][0].enhanced.shape == (3, 256, 256)
    changed = (with_faces.images - plain.images).abs().amax(dim=1)[0]
    assert changed[40:56, 48:64].max() > 0          # the face region was replaced...
    assert changed[:5, :5].max() == 0               # ...and far corners were not


def test_store_from_explicit_files(tmp_path: Path) -> None:
    store = ModelStore.from_files({"vae_a": tmp_path / "a.pth"})
    assert store.missing(["vae_a", "vae_b_quality"]) == ["vae_b_quality"]
