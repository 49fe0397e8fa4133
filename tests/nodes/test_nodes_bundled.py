"""The bundled default set in ComfyUI: listed by every loader after models/oldphoto's files,
and used by the all-in-one node when models/oldphoto holds no checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, loaders
from oldphoto_pack.nodes.all_in_one import OldPhotoRestore, folder_choices

from oldphoto_core.errors import CheckpointError, InputError
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
    """A bundled set without a detector: 'auto' restores through the quality path (the core
    Restorer does the same), 'on' names what is missing."""
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


def _composed(images, vae_a, mapping, vae_b, stretch):
    """Load -> Encode -> Map (quality) -> Decode, the shipped quality workflow's graph."""
    from oldphoto_pack.nodes.restoration import (
        OldPhotoLatentMap,
        OldPhotoVAEDecodeClean,
        OldPhotoVAEEncodeOld,
    )
    load_vae = NODE_CLASS_MAPPINGS["OldPhotoVAELoader"]()
    (a,) = load_vae.load(vae_a)
    (m,) = NODE_CLASS_MAPPINGS["OldPhotoMappingLoader"]().load(mapping)
    (b,) = load_vae.load(vae_b)
    (lat,) = OldPhotoVAEEncodeOld().encode(images, a, "resize")
    (clean,) = OldPhotoLatentMap().map(lat, m, 0)
    (out,) = OldPhotoVAEDecodeClean().decode(clean, b, stretch, True)
    return b, out


def test_the_composed_graph_uses_the_tone_of_the_bundled_set(tiny_bundled_set, images):
    """Decode's 'auto' follows the VAE's set: with the bundled files, the graph of the four
    composable nodes gives what the all-in-one node and the core Restorer give (anchor), and
    not the reference stretch that 'auto' means for published checkpoints."""
    vae_b, out = _composed(images, PREFIX + "VAE_A.safetensors",
                           PREFIX + "mapping_quality.safetensors",
                           PREFIX + "VAE_B.safetensors", "auto")
    assert vae_b.tone == "anchor"
    whole, _, _ = NODE.restore(images, "off", False, "off", "auto", BUNDLED_LABEL)
    # the same networks on the same tensors of the same shapes (48x40 needs no resize on
    # either path): the same kernels in the same order give the same bits
    assert torch.equal(out, whole)
    _, stretched = _composed(images, PREFIX + "VAE_A.safetensors",
                             PREFIX + "mapping_quality.safetensors",
                             PREFIX + "VAE_B.safetensors", "reference")
    assert not torch.allclose(stretched, out, atol=1e-3)


def _published(role: str) -> str:
    from oldphoto_core.models import ROLES
    return ROLES[role].published_path


def test_auto_is_the_reference_stretch_for_a_file_of_no_set(use_models, monkeypatch, images):
    """Published checkpoints have no manifest: 'auto' keeps the reference's stretch, so
    workflows saved before the choice existed give the same pixels."""
    monkeypatch.setenv("OLDPHOTO_MODELS", str(use_models))
    names = [_published(r) for r in ("vae_a", "mapping_quality", "vae_b_quality")]
    vae_b, auto = _composed(images, *names, "auto")
    assert vae_b.model_set is None and vae_b.tone == "reference"
    _, reference = _composed(images, *names, "reference")
    assert torch.equal(auto, reference)


def test_a_set_manifest_beside_a_file_travels_with_the_loaded_model(models_dir, tmp_path,
                                                                    monkeypatch):
    """A user's recipe output in models/oldphoto: each loaded file carries its set's
    settings, a file the manifest does not name carries none, and a corrupt manifest is a
    clear error naming it."""
    import shutil
    for role in ("vae_a", "vae_b_quality"):
        shutil.copy(models_dir / _published(role), tmp_path / f"{role}.pth")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"roles": {"vae_b_quality": "vae_b_quality.pth"}, "tone": "none"}))
    monkeypatch.setenv("OLDPHOTO_MODELS", str(tmp_path))
    load = NODE_CLASS_MAPPINGS["OldPhotoVAELoader"]().load
    assert load("vae_b_quality.pth")[0].tone == "none"
    assert load("vae_a.pth")[0].model_set is None
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json"):
        load("vae_b_quality.pth")
