"""The bundled default set in ComfyUI: listed by every loader after models/oldphoto's files,
and used by the all-in-one node when models/oldphoto holds no checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, loaders
from oldphoto_pack.nodes.all_in_one import OldPhotoRestore, folder_choices

from oldphoto_core.errors import InputError
from oldphoto_core.models import BUNDLED_LABEL

NODE = OldPhotoRestore()
PREFIX = BUNDLED_LABEL + "/"


def test_loaders_list_the_bundled_files_after_the_folders(use_models, tiny_bundled_set,
                                                          monkeypatch):
    monkeypatch.setenv("OLDPHOTO_MODELS", str(use_models))  # the fixture order unset it
    vaes = loaders.files_of_kind("vae")
    assert vaes[-2:] == [PREFIX + "VAE_A.safetensors", PREFIX + "VAE_B.safetensors"]
    assert not vaes[0].startswith(PREFIX)  # the folder's own files come first
    assert loaders.files_of_kind("mapping")[-2:] == [PREFIX + "mapping_quality.safetensors",
                                                      PREFIX + "mapping_scratch.safetensors"]
    assert loaders.files_of_kind("scratch_detector")[-1] == PREFIX + "scratch_detector.safetensors"
    assert not [n for n in loaders.files_of_kind("face_enhancer") if n.startswith(PREFIX)]
    (model,) = NODE_CLASS_MAPPINGS["OldPhotoVAELoader"]().load(PREFIX + "VAE_A.safetensors")
    assert model.descriptor.arch.id == "vae"
    assert "not found" in loaders.check_model_file(PREFIX + "nothing.safetensors", "vae")


def test_all_in_one_falls_back_to_the_bundled_set(tiny_bundled_set, images):
    assert folder_choices()[-1] == BUNDLED_LABEL
    out, mask, info = NODE.restore(images, "on", False, "off", "auto", "oldphoto")
    assert out.shape == images.shape and mask.shape == images.shape[:3]
    assert {item["models"] for item in json.loads(info)} == {BUNDLED_LABEL}
    out2, _, _ = NODE.restore(images, "on", False, "off", "auto", BUNDLED_LABEL)
    assert out2.shape == images.shape
    with pytest.raises(InputError, match="covers the quality and scratch"):
        NODE.restore(images, "on", True, "off", "auto", "oldphoto")


def test_all_in_one_uses_the_tone_the_bundled_set_asks_for(tiny_bundled_set, images):
    """The set's manifest says "anchor": the node's output is the core Restorer's with that
    tone, not the reference stretch."""
    from oldphoto_core import Restorer
    out, _, _ = NODE.restore(images, "off", False, "off", "auto", BUNDLED_LABEL)
    photos = images.permute(0, 3, 1, 2)
    anchored = Restorer(tone="anchor").restore(photos, scratch="off").images
    reference = Restorer(tone="reference").restore(photos, scratch="off").images
    got = out.permute(0, 3, 1, 2)
    assert torch.allclose(got, anchored, atol=1e-6)
    assert not torch.allclose(anchored, reference, atol=1e-3)


def test_a_folder_with_checkpoints_is_never_mixed_with_the_bundled_set(use_models,
                                                                       tiny_bundled_set,
                                                                       monkeypatch, images):
    monkeypatch.setenv("OLDPHOTO_MODELS", str(use_models))
    _, _, info = NODE.restore(images, "off", False, "off", "auto", "oldphoto")
    assert {item["models"] for item in json.loads(info)} == {"checkpoints in oldphoto"}


def test_auto_runs_the_quality_path_with_a_set_without_scratch_networks(tiny_bundled_set,
                                                                        images):
    """The shipped bundled set has no detector: 'auto' restores through the quality path (the
    core Restorer does the same), 'on' names what is missing."""
    folder = next(iter(tiny_bundled_set.values())).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    for role in ("scratch_detector", "mapping_scratch", "vae_b_scratch"):
        manifest["roles"].pop(role)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _, _, info = NODE.restore(images, "auto", False, "off", "auto", BUNDLED_LABEL)
    assert {item["mode"] for item in json.loads(info)} == {"quality"}
    from oldphoto_core import Restorer
    assert Restorer().restore(images.permute(0, 3, 1, 2)).mode == "quality"
    with pytest.raises(InputError, match="covers the quality restoration only"):
        NODE.restore(images, "on", False, "off", "auto", BUNDLED_LABEL)
