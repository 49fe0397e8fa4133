"""Loader nodes: file lists by content, early validation, caching, wrong kinds, face options."""

from __future__ import annotations

import os

import pytest
import torch
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, detector_loader, loaders
from oldphoto_pack.nodes.runtime import FaceDetectorHandle, OldPhotoModel

from oldphoto_core.errors import InputError, OldPhotoError
from oldphoto_core.models import ROLES

P = {role: r.published_path for role, r in ROLES.items()}
M = NODE_CLASS_MAPPINGS


def _listed(node_id):
    return M[node_id].INPUT_TYPES()["required"]["model_name"][0]


def test_each_loader_lists_only_its_kind(use_models):
    assert _listed("OldPhotoScratchModelLoader") == [P["scratch_detector"]]
    assert _listed("OldPhotoVAELoader") == sorted([P["vae_a"], P["vae_b_quality"],
                                                    P["vae_b_scratch"]])
    assert _listed("OldPhotoMappingLoader") == sorted([P["mapping_quality"],
                                                        P["mapping_scratch"], P["mapping_hr"]])
    assert _listed("OldPhotoFaceModelLoader") == sorted([P["face_256"], P["face_512"]])
    everything = sum((_listed(n) for n in ("OldPhotoScratchModelLoader", "OldPhotoVAELoader",
                                           "OldPhotoMappingLoader", "OldPhotoFaceModelLoader")),
                     [])
    assert not any(n.endswith(("junk.pth", "other_network.pt", "notes.txt")) for n in everything)


def test_empty_folder_lists_nothing():
    assert _listed("OldPhotoVAELoader") == []


def test_validate_inputs_explains(use_models):
    vae = M["OldPhotoVAELoader"]
    assert vae.VALIDATE_INPUTS(P["vae_a"]) is True
    missing = vae.VALIDATE_INPUTS("nope/latest_net_G.pth")
    assert "not found" in missing and str(use_models) in missing and "VAE_A_quality" in missing
    wrong = vae.VALIDATE_INPUTS(P["mapping_scratch"])
    assert "partial non-local" in wrong and "Load Old Photo Mapping" in wrong
    assert "not a network oldphoto knows" in vae.VALIDATE_INPUTS("other_network.pt")
    assert "not a network oldphoto knows" in vae.VALIDATE_INPUTS("junk.pth")


def test_load_returns_a_cached_wrapper(use_models):
    node = M["OldPhotoMappingLoader"]()
    (a,) = node.load(P["mapping_scratch"])
    (b,) = node.load(P["mapping_scratch"])
    assert isinstance(a, OldPhotoModel) and a.name == P["mapping_scratch"]
    assert a.descriptor is b.descriptor  # loaded once
    assert a.descriptor.arch.id == "mapping_scratch" and a.descriptor.device.type == "cpu"
    assert not any(p.requires_grad for p in a.descriptor.model.parameters())


def test_cache_follows_the_file(use_models, tmp_path, monkeypatch, tiny_sds):
    monkeypatch.setenv("OLDPHOTO_MODELS", str(tmp_path))
    path = tmp_path / "VAE_A_quality.pth"
    torch.save(tiny_sds["vae"], path)
    node = M["OldPhotoVAELoader"]
    (a,) = node().load("VAE_A_quality.pth")
    state = node.IS_CHANGED("VAE_A_quality.pth")
    sd = {k: v + 1 if v.is_floating_point() else v for k, v in tiny_sds["vae"].items()}
    torch.save(sd, path)
    os.utime(path, ns=(1, 10**18))
    assert node.IS_CHANGED("VAE_A_quality.pth") != state
    (b,) = node().load("VAE_A_quality.pth")
    assert b.descriptor is not a.descriptor


def test_wrong_kind_at_run_time_is_a_clear_error(use_models):
    with pytest.raises(InputError, match="Load Old Photo Scratch Detector"):
        M["OldPhotoVAELoader"]().load(P["scratch_detector"])


def test_corrupt_file_of_a_known_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("OLDPHOTO_MODELS", str(tmp_path))
    (tmp_path / "VAE_A_quality.pth").write_bytes(b"PK\x03\x04 truncated")
    msg = M["OldPhotoVAELoader"].VALIDATE_INPUTS("VAE_A_quality.pth")
    assert isinstance(msg, str) and "not a network" in msg


@pytest.mark.parametrize(("choice", "name", "size"), [
    ("auto", "face_256", 256), ("auto", "face_512", 512), ("512", "face_256", 512),
    ("256", "face_512", 256)])
def test_face_model_size(use_models, choice, name, size):
    (h,) = M["OldPhotoFaceModelLoader"]().load(P[name], choice)
    assert h.face_size == size and h.kind == "face_enhancer"
    assert M["OldPhotoFaceModelLoader"].VALIDATE_INPUTS(P[name], choice) is True
    assert "face_size" in M["OldPhotoFaceModelLoader"].VALIDATE_INPUTS(P[name], "300")


def test_face_detector_loader_dlib():
    pytest.importorskip("dlib")
    node = M["OldPhotoFaceDetectorLoader"]
    assert node.VALIDATE_INPUTS("dlib") is True
    assert node.VALIDATE_INPUTS("auto") is True
    (h,) = node().load("dlib", "buffalo_l", 0.5)
    (h2,) = node().load("dlib", "buffalo_l", 0.5)
    assert isinstance(h, FaceDetectorHandle) and h.detector is h2.detector


def test_face_detector_loader_insightface_needs_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("OLDPHOTO_INSIGHTFACE", str(tmp_path))
    node = M["OldPhotoFaceDetectorLoader"]
    msg = node.VALIDATE_INPUTS("insightface", "buffalo_l", 0.5)
    assert isinstance(msg, str) and ("det_10g.onnx" in msg or "insightface" in msg)
    with pytest.raises(OldPhotoError):
        node().load("insightface", "buffalo_l", 0.5)
    assert "folder name" in node.VALIDATE_INPUTS("dlib", "../x", 0.5)
    (tmp_path / "models" / "antelopev2").mkdir(parents=True)
    packs = node.INPUT_TYPES()["required"]["insightface_pack"][0]
    assert packs == ["buffalo_l", "antelopev2"]
    assert detector_loader.insightface_root("buffalo_l") == str(tmp_path)


def test_models_of_changed_or_deleted_files_are_forgotten(tmp_path, monkeypatch, tiny_sds):
    """A server runs for weeks: the weights of a file that was replaced or deleted must not
    stay in the cache (nothing could ever use them again)."""
    monkeypatch.setenv("OLDPHOTO_MODELS", str(tmp_path))
    for name in ("VAE_A_quality.pth", "VAE_B_quality.pth"):
        torch.save(tiny_sds["vae"], tmp_path / name)
    torch.save(tiny_sds["mapping_quality"], tmp_path / "mapping_quality.pth")
    vae, mapping = M["OldPhotoVAELoader"](), M["OldPhotoMappingLoader"]()
    (a,) = vae.load("VAE_A_quality.pth")
    vae.load("VAE_B_quality.pth")
    path_a, path_b = (str(tmp_path / n) for n in ("VAE_A_quality.pth", "VAE_B_quality.pth"))
    assert {path_a, path_b} <= set(loaders._models)
    os.remove(path_b)
    os.utime(path_a, ns=(1, 10**18))
    mapping.load("mapping_quality.pth")
    assert path_b not in loaders._models and path_b not in loaders._kinds
    assert path_a not in loaders._models  # changed: reloaded only when asked for
    (again,) = vae.load("VAE_A_quality.pth")
    assert again.descriptor is not a.descriptor


def test_face_detector_cache_is_bounded(monkeypatch):
    """Each threshold makes a detector (an onnxruntime session for insightface): trying
    thresholds must not grow the server's memory without bound."""
    made = []

    def fake(backend, **kwargs):
        made.append(kwargs["threshold"])
        return FaceDetectorHandle(object(), backend)  # any object stands for a detector

    monkeypatch.setattr(detector_loader, "make_face_detector", fake)
    node = M["OldPhotoFaceDetectorLoader"]()
    for t in (0.3, 0.4, 0.5, 0.6, 0.7):
        node.load("dlib", "buffalo_l", t)
    assert len(detector_loader._detectors) == detector_loader.MAX_DETECTORS
    (h1,) = node.load("dlib", "buffalo_l", 0.7)  # the most recent ones are kept
    assert len(made) == 5
    node.load("dlib", "buffalo_l", 0.3)  # evicted: made again
    assert len(made) == 6 and len(detector_loader._detectors) == detector_loader.MAX_DETECTORS
    (h2,) = node.load("dlib", "buffalo_l", 0.7)
    assert h2.detector is h1.detector and len(made) == 6
