"""Recognition from keys and shapes: every published manifest maps to the right network."""

from __future__ import annotations

import pytest
import torch

from oldphoto_core.registry import ARCHITECTURES, detect_architecture, expected_shapes

# The reference's class names (recorded in each manifest) -> our architecture ids.
REFERENCE_CLASS_TO_ARCH = {
    "GlobalGenerator_DCDCv2": "vae",
    "Mapping_Model": "mapping_quality",
    "Mapping_Model_with_mask": "mapping_scratch",
    "Mapping_Model_with_mask_2": "mapping_patch_attention",
    "UNet": "scratch_unet",
    "SPADEGenerator": "face_spade",
}


def test_every_manifest_is_recognised_and_fits_exactly(manifests, meta_sd):
    assert manifests
    for name, manifest in manifests.items():
        sd = meta_sd(manifest["keys"])
        spec = detect_architecture(sd)
        ref_class = manifest["checkpoint"]["class"].rsplit(":", 1)[1]
        assert spec is not None, f"{name} not recognised"
        assert spec.id == REFERENCE_CLASS_TO_ARCH[ref_class], name
        with torch.device("meta"):
            model = spec.build(sd)
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert ours == manifest["keys"], f"{name}: keys or shapes differ"


@pytest.mark.parametrize("spec", ARCHITECTURES, ids=lambda s: s.id)
def test_default_build_is_recognised_as_itself(spec):
    sd = {k: torch.empty(s, device="meta") for k, s in expected_shapes(spec).items()}
    assert detect_architecture(sd) is spec


def test_nothing_matches_an_unrelated_state_dict():
    assert detect_architecture({"weight": torch.zeros(3)}) is None
