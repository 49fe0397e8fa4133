"""Old Photo Degrade: shapes, ranges, seeds, batches, params JSON, early validation."""

from __future__ import annotations

import json

import pytest
import torch
from oldphoto_pack.nodes.degrade import OldPhotoDegrade, build_config

from oldphoto_core.degrade import DEFAULT_CONFIG, degrade
from oldphoto_core.errors import InputError

NODE = OldPhotoDegrade()


def _defaults() -> dict:
    req = OldPhotoDegrade.INPUT_TYPES()["required"]
    return {k: v[1]["default"] for k, v in req.items() if k not in ("image", "seed")}


@pytest.fixture
def clean():
    g = torch.Generator().manual_seed(5)
    return torch.rand(3, 64, 56, 3, generator=g) * 0.6 + 0.2


def test_defaults_are_the_papers():
    assert build_config(**_defaults()) == DEFAULT_CONFIG


def test_outputs(clean, progress):
    before = clean.clone()
    image, mask, params = NODE.run(clean, 7, "", **_defaults())
    assert image.shape == clean.shape and image.dtype == torch.float32
    assert mask.shape == clean.shape[:3]
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(image, clean) and torch.equal(clean, before)
    items = json.loads(params)
    assert isinstance(items, list) and len(items) == 3 and all(isinstance(p, dict) for p in items)
    assert progress[0].updates == [1, 2, 3]


def test_seed_and_batch_consistency(clean):
    a = NODE.run(clean, 11, "", **_defaults())
    b = NODE.run(clean, 11, "", **_defaults())
    c = NODE.run(clean, 12, "", **_defaults())
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    assert not torch.equal(a[0], c[0])
    # the per-image loop gives what the core gives for the whole batch
    ref = degrade(clean.movedim(-1, 1), seed=11)
    torch.testing.assert_close(a[0], ref.image.movedim(1, -1), rtol=0, atol=0)  # same bits
    assert json.loads(a[2]) == json.loads(json.dumps(ref.params))


def test_widgets_and_json_reach_the_config():
    w = _defaults() | {"noise_sigma_min": 1.0, "noise_sigma_max": 2.0, "color_jitter": 5.0,
                       "hole_count_max": 3}
    cfg = build_config(config_json='{"crack_count": [0, 5], "sepia_prob": 0.0}', **w)
    assert cfg.noise_sigma_255 == (1.0, 2.0) and cfg.color_jitter_255 == (-5.0, 5.0)
    assert cfg.hole_count == (0, 3) and cfg.crack_count == (0, 5) and cfg.sepia_prob == 0.0


def test_validate_inputs():
    assert OldPhotoDegrade.VALIDATE_INPUTS(**_defaults()) is True
    bad = OldPhotoDegrade.VALIDATE_INPUTS(**(_defaults() | {"jpeg_quality_min": 90,
                                                            "jpeg_quality_max": 50}))
    assert isinstance(bad, str) and "jpeg_quality" in bad
    assert "not valid JSON" in OldPhotoDegrade.VALIDATE_INPUTS(config_json="{oops")
    assert "unknown field" in OldPhotoDegrade.VALIDATE_INPUTS(config_json='{"nope": 1}')
    assert "JSON object" in OldPhotoDegrade.VALIDATE_INPUTS(config_json="[1, 2]")
    with pytest.raises(InputError):
        NODE.run(torch.rand(1, 32, 32, 3), 0, "{oops", **_defaults())


def test_bad_image():
    with pytest.raises(InputError):
        NODE.run(torch.rand(1, 8, 8, 3), 0, "", **_defaults())
