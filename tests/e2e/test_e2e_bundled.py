"""End to end: a ComfyUI with nothing in ``models/oldphoto`` runs the bundled default set.

A fresh install has no checkpoints; the loaders must still list something loadable and the
all-in-one workflow must restore, saying which set ran. Needs ``COMFYUI_PATH`` (see
``test_e2e_comfyui.py``) and a checkout that ships the bundled set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from comfy_e2e import COMFYUI, SKIP_REASON, Client, api, start_comfyui
from PIL import Image

import oldphoto_core
from oldphoto_core.models import BUNDLED_LABEL, ROLES, manifest_files

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI, reason=SKIP_REASON),
]


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Client:
    with start_comfyui(tmp_path_factory, "bare", models=False) as client:
        yield client


def _shipped() -> dict:
    """The checkout's bundled set, read from its manifest (the autouse fixture of
    tests/conftest.py hides it from in-process code; ComfyUI's process sees it)."""
    files = manifest_files(Path(oldphoto_core.__file__).parent / "weights" / "default")
    assert files, "this checkout ships no bundled default set"
    return files


def test_loaders_list_the_bundled_set(bare):
    shipped = _shipped()
    status, info = bare.request("/object_info/OldPhotoVAELoader", timeout=60)
    assert status == 200
    names = info["OldPhotoVAELoader"]["input"]["required"]["model_name"][0]
    expected = sorted({f"{BUNDLED_LABEL}/{shipped[r].name}"
                       for r in ("vae_a", "vae_b_quality", "vae_b_scratch")})
    assert names == expected


def test_all_in_one_restores_with_the_bundled_set(bare):
    _shipped()
    prompt = api("oldphoto_all_in_one")
    for node in prompt.values():
        if node["class_type"] == "OldPhotoRestore":
            node["inputs"]["faces"] = "off"
    hist = bare.run(prompt)
    texts = [out["text"] for out in hist["outputs"].values() if "text" in out]
    info = json.loads(texts[0][0])
    assert info[0]["models"] == BUNDLED_LABEL and info[0]["mode"] in ("quality", "scratch")
    images = [img for out in hist["outputs"].values() for img in out.get("images", [])
              if img["filename"].startswith("restored")]
    assert images, "no restored image saved"
    path = bare.base / "output" / images[0]["subfolder"] / images[0]["filename"]
    arr = np.asarray(Image.open(path), dtype=np.float32) / 255
    assert arr.shape[:2] == (256, 256) and float(arr.std()) > 0.01


def _saved_restoration(client: Client, hist: dict) -> np.ndarray:
    images = [img for out in hist["outputs"].values() for img in out.get("images", [])
              if img["filename"].startswith("restored")]
    assert len(images) == 1, images
    path = client.base / "output" / images[0]["subfolder"] / images[0]["filename"]
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("workflow, scratch", [("oldphoto_quality_restoration", "off"),
                                              ("oldphoto_scratch_restoration", "on")])
def test_a_shipped_graph_restores_like_the_all_in_one_with_the_bundled_set(bare, workflow,
                                                                           scratch):
    """The composable nodes with the bundled files chosen in the loaders: Decode's 'auto'
    tone follows the set (anchor) and Detect Scratches' threshold 0 is the set's calibrated
    one, so the saved restoration is the all-in-one node's, pixel for pixel (the same
    networks and kernels on the same photo)."""
    shipped = _shipped()
    by_path = {ROLES[role].published_path: file.name for role, file in shipped.items()}
    prompt = api(workflow)
    for node in prompt.values():
        name = node["inputs"].get("model_name")
        if name is not None:
            node["inputs"]["model_name"] = f"{BUNDLED_LABEL}/{by_path[name]}"
    composed = _saved_restoration(bare, bare.run(prompt))
    whole = api("oldphoto_all_in_one")
    for node in whole.values():
        if node["class_type"] == "OldPhotoRestore":
            node["inputs"].update(faces="off", scratch=scratch)
    assert np.array_equal(composed, _saved_restoration(bare, bare.run(whole)))
