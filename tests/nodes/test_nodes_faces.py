"""Detect Faces, Enhance Faces, Blend Faces (a fake detector, a tiny face generator).

Faces To Images, restored crops and whole graphs: test_nodes_face_interop.py."""

from __future__ import annotations

import pytest
import torch
from oldphoto_pack.nodes import comfy_compat
from oldphoto_pack.nodes.face_set import FaceSet
from oldphoto_pack.nodes.faces import (
    OldPhotoBlend,
    OldPhotoFaceDetect,
    OldPhotoFaceEnhance,
    OldPhotoFacesToImages,
)

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, align_faces

DETECT, ENHANCE, BLEND = OldPhotoFaceDetect(), OldPhotoFaceEnhance(), OldPhotoBlend()
TO_IMAGES = OldPhotoFacesToImages()


@pytest.fixture
def photos():
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 96, 80, 3, generator=g) * 0.5 + 0.25


def test_detect_finds_every_face(photos, fake_detector, progress):
    det = fake_detector(2)
    (faces,) = DETECT.detect(photos, det)
    assert isinstance(faces, FaceSet) and faces.batch == 2 and faces.count == 4
    assert det.detector.calls == 2 and progress[0].updates == [1, 2]
    assert faces.face_size is None and faces.size == (96, 80)  # aligned by the consumer
    for i, item in enumerate(faces.faces):
        for f in item:
            assert isinstance(f, Face) and f.image_index == i
            assert f.aligned is None and f.matrix is None and f.enhanced is None


def test_no_faces_is_not_an_error(photos, fake_detector, handle, oldphoto_logs):
    (faces,) = DETECT.detect(photos, fake_detector(0))
    assert faces.count == 0 and faces.batch == 2 and "no faces found" in oldphoto_logs.text
    (same,) = ENHANCE.enhance(faces, handle("face", face_size=256))
    assert same.count == 0 and same.batch == 2
    (out,) = BLEND.blend(photos, same)
    assert torch.equal(out, photos) and "unchanged" in oldphoto_logs.text


def test_enhance_and_blend(photos, fake_detector, handle, tiny, progress):
    before = photos.clone()
    (faces,) = DETECT.detect(photos, fake_detector(1))
    (enhanced,) = ENHANCE.enhance(faces, handle("face", face_size=256))
    assert enhanced is not faces and all(f.enhanced is None for f in faces.flat)
    assert enhanced.face_size == 256 and enhanced.source is photos
    for item in enhanced.faces:
        for f in item:
            assert f.aligned.shape == (3, 256, 256)
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


def test_enhance_aligns_at_the_models_size(photos, fake_detector, handle):
    """Faces aligned at another size (here by 'Faces To Images') are aligned again, from the
    photos, at the model's size: the two can never disagree."""
    (faces,) = DETECT.detect(photos[:1], fake_detector(1))
    _, at_128 = TO_IMAGES.to_images(faces, 128)
    (enhanced,) = ENHANCE.enhance(at_128, handle("face", face_size=256))
    assert at_128.face_size == 128 and enhanced.face_size == 256
    (ref,) = align_faces(photos[:1].movedim(-1, 1), faces.nested(), face_size=256)
    torch.testing.assert_close(enhanced.flat[0].aligned, ref[0].aligned, rtol=0, atol=0)
    assert (enhanced.flat[0].matrix == ref[0].matrix).all()


def test_detect_has_no_face_size_any_more(photos, fake_detector):
    """The crop size moved to the consumers; a caller passing the old argument still works."""
    assert "face_size" not in OldPhotoFaceDetect.INPUT_TYPES()["required"]
    assert not hasattr(OldPhotoFaceDetect, "VALIDATE_INPUTS")
    (faces,) = DETECT.detect(photos, fake_detector(1), face_size="512")
    assert faces.face_size is None and faces.count == 2


def test_blend_errors(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(1))
    with pytest.raises(InputError, match="no enhanced crops"):
        BLEND.blend(photos, faces)
    _, aligned = TO_IMAGES.to_images(faces, 128)
    with pytest.raises(InputError, match="no enhanced crops"):
        BLEND.blend(photos, aligned)
    with pytest.raises(InputError, match="batch of 2"):
        BLEND.blend(photos[:1], faces)
    with pytest.raises(InputError, match="80x96 images but the image is 96x96"):
        BLEND.blend(torch.rand(2, 96, 96, 3), faces)
    with pytest.raises(InputError, match="OLDPHOTO_FACES"):
        BLEND.blend(photos, "faces")
    with pytest.raises(InputError, match="OLDPHOTO_FACES"):
        BLEND.blend(photos, [[], []])  # the list this type was before


def test_wrong_inputs(photos, handle):
    with pytest.raises(InputError, match="Face Detector"):
        DETECT.detect(photos, handle("face"))
    with pytest.raises(InputError, match="face_enhancer"):
        ENHANCE.enhance([[]], handle("vae"))
    with pytest.raises(InputError, match="OLDPHOTO_FACES"):
        TO_IMAGES.to_images([[]], 512)


def test_interrupt_during_enhancement(photos, fake_detector, handle, tiny, monkeypatch):
    (faces,) = DETECT.detect(photos, fake_detector(1))

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
        (faces,) = DETECT.detect(photos[:1], fake_detector(1))
        (enhanced,) = ENHANCE.enhance(faces, model)
        (out,) = BLEND.blend(photos[:1], enhanced)
    assert not any(p.is_inference() for p in model.descriptor.model.parameters())
    assert out.shape == photos[:1].shape
    (again,) = ENHANCE.enhance(faces, model)  # outside inference mode too
    # the same network call on the same crops (enhance_crops always runs in inference mode)
    torch.testing.assert_close(again.flat[0].enhanced, enhanced.flat[0].enhanced, rtol=0, atol=0)
