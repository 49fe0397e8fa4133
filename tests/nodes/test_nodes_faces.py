"""Detect Faces, Enhance Faces, Blend Faces (a fake detector, a tiny face generator)."""

from __future__ import annotations

import pytest
import torch
from oldphoto_pack.nodes import comfy_compat
from oldphoto_pack.nodes.faces import OldPhotoBlend, OldPhotoFaceDetect, OldPhotoFaceEnhance

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face

DETECT, ENHANCE, BLEND = OldPhotoFaceDetect(), OldPhotoFaceEnhance(), OldPhotoBlend()


@pytest.fixture
def photos():
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 96, 80, 3, generator=g) * 0.5 + 0.25


def test_detect_aligns_every_face(photos, fake_detector, progress):
    det = fake_detector(2)
    (faces,) = DETECT.detect(photos, det, "256")
    assert len(faces) == 2 and all(len(item) == 2 for item in faces)
    assert det.detector.calls == 2 and progress[0].updates == [1, 2]
    for i, item in enumerate(faces):
        for f in item:
            assert isinstance(f, Face) and f.image_index == i and f.face_size == 256
            assert f.aligned.shape == (3, 256, 256) and f.enhanced is None
            assert 0 <= float(f.aligned.min()) and float(f.aligned.max()) <= 1


def test_no_faces_is_not_an_error(photos, fake_detector, handle, oldphoto_logs):
    (faces,) = DETECT.detect(photos, fake_detector(0), "256")
    assert faces == [[], []] and "no faces found" in oldphoto_logs.text
    (same,) = ENHANCE.enhance(faces, handle("face", face_size=256))
    assert same == [[], []]
    (out,) = BLEND.blend(photos, same)
    assert torch.equal(out, photos) and "unchanged" in oldphoto_logs.text


def test_enhance_and_blend(photos, fake_detector, handle, tiny, progress):
    before = photos.clone()
    (faces,) = DETECT.detect(photos, fake_detector(1), "256")
    (enhanced,) = ENHANCE.enhance(faces, handle("face", face_size=256))
    assert enhanced is not faces and all(f.enhanced is None for item in faces for f in item)
    for item in enhanced:
        for f in item:
            assert f.enhanced.shape == (3, 256, 256) and f.enhanced.dtype == torch.float32
    assert progress[-1].current == 2  # two faces
    assert tiny["face"].device.type == "cpu"
    (out,) = BLEND.blend(photos, enhanced)
    assert out.shape == photos.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    changed = (out - photos).abs().amax(dim=-1) > 0
    assert changed.any()
    assert not changed[:, :5, :].any()  # far from the face: untouched
    assert torch.equal(photos, before)


def test_face_size_must_match(photos, fake_detector, handle):
    (faces,) = DETECT.detect(photos[:1], fake_detector(1), "256")
    with pytest.raises(InputError, match="512 px"):
        ENHANCE.enhance(faces, handle("face", face_size=512))


def test_blend_errors(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(1), "256")
    with pytest.raises(InputError, match="not been enhanced"):
        BLEND.blend(photos, faces)
    with pytest.raises(InputError, match="batch of 2"):
        BLEND.blend(photos[:1], faces)
    with pytest.raises(InputError, match="OLDPHOTO_FACES"):
        BLEND.blend(photos, "faces")


def test_wrong_inputs(photos, handle):
    with pytest.raises(InputError, match="Face Detector"):
        DETECT.detect(photos, handle("face"), "256")
    with pytest.raises(InputError, match="face_enhancer"):
        ENHANCE.enhance([[]], handle("vae"))
    assert OldPhotoFaceDetect.VALIDATE_INPUTS("512") is True
    assert "face_size" in OldPhotoFaceDetect.VALIDATE_INPUTS("300")


def test_interrupt_during_enhancement(photos, fake_detector, handle, tiny, monkeypatch):
    (faces,) = DETECT.detect(photos, fake_detector(1), "256")

    def cancelled():
        raise comfy_compat.Interrupted("cancelled")

    monkeypatch.setattr(comfy_compat, "throw_if_interrupted", cancelled)
    with pytest.raises(comfy_compat.Interrupted):
        ENHANCE.enhance(faces, handle("face", face_size=256))
    assert tiny["face"].device.type == "cpu"


def test_face_chain_under_inference_mode_like_comfyui(photos, fake_detector, use_models):
    """ComfyUI runs every node in torch.inference_mode(); a model loaded there must still work
    in later runs (the loader keeps normal tensors)."""
    from oldphoto_pack.nodes.loaders import OldPhotoFaceModelLoader

    name = "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth"
    with torch.inference_mode():
        (model,) = OldPhotoFaceModelLoader().load(name, "auto")
        (faces,) = DETECT.detect(photos[:1], fake_detector(1), "256")
        (enhanced,) = ENHANCE.enhance(faces, model)
        (out,) = BLEND.blend(photos[:1], enhanced)
    assert not any(p.is_inference() for p in model.descriptor.model.parameters())
    assert out.shape == photos[:1].shape
    (again,) = ENHANCE.enhance(faces, model)  # outside inference mode too
    # the same network call on the same crops (enhance_crops always runs in inference mode)
    torch.testing.assert_close(again[0][0].enhanced, enhanced[0][0].enhanced, rtol=0, atol=0)
