"""Restore Old Photo (all-in-one): models from a folder or from loaders, modes, errors."""

from __future__ import annotations

import json

import pytest
import torch
from oldphoto_pack.nodes.all_in_one import OldPhotoRestore, folder_choices

from oldphoto_core.errors import CheckpointError, InputError

NODE = OldPhotoRestore()


@pytest.mark.parametrize(("scratch", "hr", "modes"), [
    ("off", False, {"quality"}), ("on", False, {"scratch"}), ("on", True, {"hr"}),
    ("auto", False, {"quality", "scratch"})])
def test_modes_from_the_models_folder(use_models, images, scratch, hr, modes, progress):
    before = images.clone()
    out, mask, info = NODE.restore(images, scratch, hr, "off", "auto", "oldphoto")
    assert out.shape == images.shape and mask.shape == images.shape[:3]
    assert 0 <= float(out.min()) and float(out.max()) <= 1 and float(out.std()) > 0
    items = json.loads(info)
    assert len(items) == 2 and {i["mode"] for i in items} <= modes
    assert all(i["faces"] == 0 for i in items)
    assert torch.equal(images, before)
    # one step per chunk: the whole batch runs together (it fits), except with scratch=auto,
    # which chooses the path per photo; paths through the scratch attention also report inside
    # a chunk (in thousandths of an image) before the chunk's own step
    bar = progress[-1]
    steps = [u for u in bar.updates if u in (1, 2)]
    assert steps[-2:] == [1, 2] if scratch == "auto" else steps[-1:] == [2]
    assert (bar.current, bar.total) == (2, 2)
    if any(i["mode"] == "scratch" for i in items):
        assert 2000 in bar.updates


def test_models_folder_choices(use_models, images):
    assert folder_choices() == ["oldphoto", "oldphoto/Face_Enhancement", "oldphoto/Global"]
    assert OldPhotoRestore.VALIDATE_INPUTS(models_folder="oldphoto/Global") is True
    assert "models_folder" in OldPhotoRestore.VALIDATE_INPUTS(models_folder="oldphoto/../x")
    assert "faces" in OldPhotoRestore.VALIDATE_INPUTS(faces="maybe")
    out, _, _ = NODE.restore(images, "off", False, "off", "auto", "oldphoto/Global")
    assert out.shape == images.shape
    with pytest.raises(InputError, match="Setting_9_epoch_100"):  # faces are not in Global/
        NODE.restore(images, "off", False, "dlib", "auto", "oldphoto/Global")


def test_missing_checkpoints_are_named(images):
    with pytest.raises(InputError) as err:
        NODE.restore(images, "on", False, "off", "auto", "oldphoto")
    msg = str(err.value)
    for part in ("FT_Epoch_latest.pt", "VAE_A_quality", "mapping_scratch", "VAE_B_scratch",
                 "'scratch_model'", "'vae_b_scratch'"):
        assert part in msg
    assert "mapping_quality" not in msg


def test_loader_inputs_replace_the_folder(images, handle):
    out, mask, info = NODE.restore(
        images, "off", False, "off", "auto", "oldphoto",
        vae_a=handle("vae", "VAE_A_quality.pth"), mapping_quality=handle("mapping_quality"),
        vae_b_quality=handle("vae", "VAE_B_quality.pth"))
    assert out.shape == images.shape and json.loads(info)[0]["mode"] == "quality"
    with pytest.raises(CheckpointError, match="cannot serve as mapping_quality"):
        NODE.restore(images, "off", False, "off", "auto", "oldphoto",
                     vae_a=handle("vae"), mapping_quality=handle("mapping_scratch"),
                     vae_b_quality=handle("vae"))
    with pytest.raises(InputError, match="expects a mapping model"):
        NODE.restore(images, "off", False, "off", "auto", "oldphoto",
                     mapping_quality=handle("vae"))


def test_face_size_of_the_connected_model(use_models, images, handle):
    with pytest.raises(InputError, match="runs at 512 px"):
        NODE.restore(images, "off", False, "dlib", "256", "oldphoto",
                     face_model=handle("face", face_size=512))


def test_faces_with_dlib(use_models, images):
    pytest.importorskip("dlib")
    out, _, info = NODE.restore(images, "off", False, "dlib", "auto", "oldphoto")
    assert out.shape == images.shape
    assert all(i["faces"] == 0 for i in json.loads(info))  # noise has no faces


def test_the_cached_restorer_keeps_no_models_after_a_run(use_models, images):
    """The Restorer is cached for the server's life; the models of a run must not stay
    reachable through it (finished, failed or cancelled)."""
    from oldphoto_pack.nodes import comfy_compat
    from oldphoto_pack.nodes.all_in_one import _restorers

    NODE.restore(images, "off", False, "off", "auto", "oldphoto")
    (restorer,) = _restorers.values()
    assert restorer.store.files == {} and restorer.store._loaded == {}
    comfy_compat.request_interrupt()
    with pytest.raises(comfy_compat.Interrupted):
        NODE.restore(images, "off", False, "off", "auto", "oldphoto")
    assert restorer.store.files == {} and restorer.store._loaded == {}
