"""Detect Scratches, Encode Old Photo, Old Photo Latent Map, Decode Clean Photo."""

from __future__ import annotations

import pytest
import torch
from numeric_bounds import stack_tolerance
from oldphoto_pack.nodes import comfy_compat
from oldphoto_pack.nodes.restoration import (
    OldPhotoDetectScratches,
    OldPhotoLatentMap,
    OldPhotoVAEDecodeClean,
    OldPhotoVAEEncodeOld,
)

from oldphoto_core.errors import InputError
from oldphoto_core.stages import decode_clean, encode_old, map_latent

DETECT, ENCODE = OldPhotoDetectScratches(), OldPhotoVAEEncodeOld()
MAP, DECODE = OldPhotoLatentMap(), OldPhotoVAEDecodeClean()


@pytest.fixture
def mask(images):
    m = torch.zeros(images.shape[:3])
    m[:, 10:14, :] = 1
    return m


def _chain(images, handle, mask=None, mapping="mapping_scratch", vae_b="VAE_B_scratch.pth"):
    (lat,) = ENCODE.encode(images, handle("vae", "VAE_A_quality.pth"), "resize", mask)
    (clean,) = MAP.map(lat, handle(mapping), 0, mask)
    (out,) = DECODE.decode(clean, handle("vae", vae_b), "reference", True)
    return lat, clean, out


def test_detect_scratches(images, handle, progress):
    before = images.clone()
    (mask,) = DETECT.detect(images, handle("scratch"), 0.4, 0)
    assert mask.shape == (2, 48, 40) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(images, before)
    assert progress[0].total == 2 and progress[0].updates == [2]  # one chunk: it fits
    (grown,) = DETECT.detect(images, handle("scratch"), 0.4, 2)
    assert (grown >= mask).all()


def test_detect_wrong_model(images, handle):
    with pytest.raises(InputError, match="scratch_detector"):
        DETECT.detect(images, handle("vae"), 0.4, 0)
    with pytest.raises(InputError, match="loader"):
        DETECT.detect(images, "not a model", 0.4, 0)


def test_chain_shapes_types_ranges(images, handle, mask):
    before = images.clone()
    lat, clean, out = _chain(images, handle, mask)
    assert lat["domain"] == "old" and clean["domain"] == "clean"
    assert lat["samples"].shape == (2, 8, 12, 10) and lat["samples"].device.type == "cpu"
    assert tuple(lat["image_size"]) == (48, 40) and clean["mapping"] == "mapping_scratch"
    assert out.shape == images.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1 and float(out.std()) > 0
    assert torch.equal(images, before)


def test_nodes_match_the_core_stages(images, tiny, handle, mask):
    """Node plumbing (per-item loop, layouts) gives exactly what the core gives for the batch."""
    _, _, out = _chain(images, handle, mask)
    x, m = images.movedim(-1, 1), mask[:, None]
    lat = encode_old(x, tiny["vae"], mask=m)
    ref = decode_clean(map_latent(lat, tiny["mapping_scratch"], mask=m), tiny["vae"])
    # per-item node calls vs one batched core call: other kernel shapes, other summation
    # orders through the float32 chain (see numeric_bounds.stack_tolerance)
    chain = torch.nn.ModuleList([tiny[k].model for k in ("vae", "mapping_scratch")])
    tol = stack_tolerance(chain, 1.0, pixels=48 * 40, dtype=torch.float32, amplification=1)
    torch.testing.assert_close(out, ref.movedim(1, -1), rtol=0, atol=tol)


@pytest.mark.parametrize("batch", [1, 3])
def test_any_batch_size(handle, batch):
    imgs = torch.rand(batch, 32, 36, 3)
    _, _, out = _chain(imgs, handle, mapping="mapping_quality", vae_b="VAE_B_quality.pth")
    assert out.shape == imgs.shape


def test_pad_fit_restores_the_size(handle):
    imgs = torch.rand(1, 30, 34, 3)
    (lat,) = ENCODE.encode(imgs, handle("vae", "VAE_A_quality.pth"), "pad")
    assert tuple(lat["working_size"]) == (32, 36) and tuple(lat["padding"]) == (2, 2)
    (clean,) = MAP.map(lat, handle("mapping_quality"), 0)
    (out,) = DECODE.decode(clean, handle("vae", "VAE_B_quality.pth"), "none", True)
    assert out.shape == imgs.shape
    (work,) = DECODE.decode(clean, handle("vae", "VAE_B_quality.pth"), "none", False)
    assert work.shape == (1, 32, 36, 3)


def test_scratch_mapping_needs_a_mask(images, handle):
    (lat,) = ENCODE.encode(images, handle("vae", "VAE_A_quality.pth"), "resize")
    for key in ("mapping_scratch", "mapping_hr"):
        with pytest.raises(InputError, match="needs the scratch mask"):
            MAP.map(lat, handle(key), 0)


def test_quality_mapping_ignores_a_mask(images, handle, mask, oldphoto_logs):
    (lat,) = ENCODE.encode(images, handle("vae", "VAE_A_quality.pth"), "resize")
    (a,) = MAP.map(lat, handle("mapping_quality"), 0, mask)
    (b,) = MAP.map(lat, handle("mapping_quality"), 0)
    assert torch.equal(a["samples"], b["samples"]) and "ignored" in oldphoto_logs.text


def test_mask_of_another_size_is_resized_with_a_warning(images, handle, oldphoto_logs):
    (lat,) = ENCODE.encode(images, handle("vae", "VAE_A_quality.pth"), "resize")
    small = torch.zeros(1, 24, 20)
    small[:, 5:7] = 1
    (clean,) = MAP.map(lat, handle("mapping_hr"), 1, small)
    assert clean["samples"].shape == lat["samples"].shape
    assert "resizing" in oldphoto_logs.text
    with pytest.raises(InputError, match="batch has 3"):
        MAP.map(lat, handle("mapping_hr"), 0, torch.zeros(3, 48, 40))


def test_mask_dilation_changes_the_result(images, handle, mask):
    (lat,) = ENCODE.encode(images, handle("vae", "VAE_A_quality.pth"), "resize", mask)
    (a,) = MAP.map(lat, handle("mapping_scratch"), 0, mask)
    (b,) = MAP.map(lat, handle("mapping_scratch"), 3, mask)
    assert not torch.equal(a["samples"], b["samples"])


def test_domains_are_enforced(images, handle, mask):
    lat, clean, _ = _chain(images, handle, mask)
    with pytest.raises(InputError, match="already in the 'clean' domain"):
        MAP.map(clean, handle("mapping_scratch"), 0, mask)
    with pytest.raises(InputError, match="map it with 'Old Photo Latent Map'"):
        DECODE.decode(lat, handle("vae", "VAE_B_scratch.pth"), "reference", True)
    with pytest.raises(InputError, match="OLDPHOTO_LATENT"):
        DECODE.decode({"samples": torch.zeros(1, 4, 8, 8)}, handle("vae"), "reference", True)


def test_vae_roles_are_hinted(images, handle, oldphoto_logs):
    (lat,) = ENCODE.encode(images, handle("vae", "VAE_B_scratch/latest_net_G.pth"), "resize")
    assert "looks like a VAE_B" in oldphoto_logs.text
    (clean,) = MAP.map(lat, handle("mapping_quality"), 0)
    DECODE.decode(clean, handle("vae", "VAE_B_scratch/latest_net_G.pth"), "reference", True)
    assert "normally decoded with VAE_B_quality" in oldphoto_logs.text


def test_interrupt_stops_the_loop_and_releases_the_model(images, handle, tiny, monkeypatch):
    monkeypatch.setattr(comfy_compat, "free_bytes", lambda device: 1)  # one image per chunk
    monkeypatch.setattr(comfy_compat, "throw_if_interrupted", _raise_on_second_call())
    with pytest.raises(comfy_compat.Interrupted):
        DETECT.detect(images, handle("scratch"), 0.4, 0)
    assert tiny["scratch"].device.type == "cpu"


def _raise_on_second_call():
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise comfy_compat.Interrupted("cancelled")
    return check


def test_threshold_zero_is_the_detector_sets_calibrated_threshold(images, handle, tiny):
    """0 (the default): the threshold the detector's model set calibrated, else the
    reference's 0.4; an explicit threshold is used as given."""
    from dataclasses import replace

    from oldphoto_core.models import ModelSetManifest
    from oldphoto_core.stages import detect_scratches
    published = handle("scratch")
    x = images.movedim(-1, 1)
    (auto,) = DETECT.detect(images, published, 0.0, 0)
    assert torch.equal(auto[:, None], detect_scratches(x, tiny["scratch"], threshold=0.4))
    calibrated = replace(published, model_set=ModelSetManifest({}, scratch_threshold=0.7))
    (mask,) = DETECT.detect(images, calibrated, 0.0, 0)
    assert torch.equal(mask[:, None], detect_scratches(x, tiny["scratch"], threshold=0.7))
    (given,) = DETECT.detect(images, calibrated, 0.3, 0)
    assert torch.equal(given[:, None], detect_scratches(x, tiny["scratch"], threshold=0.3))
    assert not torch.equal(mask, given)  # the tiny detector's map spans both thresholds
    with pytest.raises(InputError, match="threshold"):
        DETECT.detect(images, published, 1.0, 0)
