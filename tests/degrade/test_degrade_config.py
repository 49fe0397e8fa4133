"""DegradeConfig: the paper's defaults, validation with clear errors, serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from oldphoto_core.degrade import DEFAULT_CONFIG, DegradeConfig
from oldphoto_core.errors import InputError


def test_defaults_are_the_papers_values():
    cfg = DegradeConfig()
    assert cfg.noise_sigma_255 == (5.0, 50.0)
    assert cfg.gaussian_blur_kernels == (3, 5, 7)
    assert cfg.gaussian_blur_sigma == (1.0, 5.0)
    assert cfg.jpeg_quality == (40, 100)
    assert cfg.color_jitter_255 == (-20.0, 20.0)
    assert cfg.op_drop_prob == 0.3
    assert cfg.unstructured_ops == ("noise", "gaussian_blur", "jpeg", "color_jitter", "box_blur")
    assert cfg.blend_modes == ("screen", "lighten", "addition")
    assert DEFAULT_CONFIG == cfg


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DegradeConfig().op_drop_prob = 0.5  # type: ignore[misc]


def test_json_round_trip():
    cfg = DegradeConfig(noise_sigma_255=(1.0, 2.0), gaussian_blur_kernels=(5,),
                        unstructured_ops=("jpeg", "noise"), blend_modes=("screen",))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert isinstance(data["noise_sigma_255"], list)
    back = DegradeConfig.from_dict(data)
    assert back == cfg and hash(back) == hash(cfg)


def test_from_dict_partial_keeps_defaults_and_rejects_unknown_keys():
    cfg = DegradeConfig.from_dict({"jpeg_quality": [60, 70]})
    assert cfg.jpeg_quality == (60, 70) and cfg.noise_sigma_255 == (5.0, 50.0)
    with pytest.raises(InputError, match="unknown field.*jpeg_qualty"):
        DegradeConfig.from_dict({"jpeg_qualty": [60, 70]})


def test_replace_validates():
    assert DegradeConfig().replace(op_drop_prob=0.0).op_drop_prob == 0.0
    with pytest.raises(InputError, match="op_drop_prob"):
        DegradeConfig().replace(op_drop_prob=2.0)


@pytest.mark.parametrize("changes, match", [
    ({"noise_sigma_255": (50.0, 5.0)}, r"noise_sigma_255: expected lo <= hi, found \(50.0, 5.0\)"),
    ({"noise_sigma_255": (-1.0, 5.0)}, "noise_sigma_255: expected values within"),
    ({"noise_sigma_255": (1.0,)}, "expected a pair"),
    ({"noise_sigma_255": ("a", 5.0)}, "expected a pair"),
    ({"noise_sigma_255": (float("nan"), 5.0)}, "expected a pair"),
    ({"jpeg_quality": (40.5, 100)}, "jpeg_quality: expected a pair .* of ints"),
    ({"jpeg_quality": (0, 100)}, r"jpeg_quality: expected values within \[1, 100\]"),
    ({"jpeg_quality": (40, 101)}, r"jpeg_quality: expected values within \[1, 100\]"),
    ({"scratch_count": (True, 3)}, "scratch_count: expected a pair"),
    ({"gaussian_blur_kernels": (3, 4)}, "gaussian_blur_kernels: expected a non-empty tuple of odd"),
    ({"box_blur_kernels": ()}, "box_blur_kernels"),
    ({"op_drop_prob": 1.5}, r"op_drop_prob: expected a probability in \[0, 1\], found 1.5"),
    ({"sepia_prob": -0.1}, "sepia_prob"),
    ({"unstructured_ops": ("noise", "sharpen")}, "unstructured_ops: expected a tuple of names"),
    ({"unstructured_ops": ("noise", "noise")}, "distinct"),
    ({"blend_modes": ("multiply",)}, "blend_modes"),
    ({"blend_modes": ()}, "blend_modes: expected at least one"),
    ({"blend_opacity": (0.5, 1.5)}, "blend_opacity"),
    ({"mask_visible_threshold": -0.1}, "mask_visible_threshold"),
    ({"texture_scale": 0.0}, "texture_scale"),
    ({"mask_threshold": 1.0}, "mask_threshold"),
    ({"reference_size": 8}, "reference_size"),
])
def test_validation_errors_say_what_was_expected(changes, match):
    with pytest.raises(InputError, match=match):
        DegradeConfig(**changes)


def test_empty_unstructured_ops_and_zero_ranges_are_allowed():
    cfg = DegradeConfig(unstructured_ops=(), scratch_count=(0, 0), grain_sigma_255=(0.0, 0.0))
    assert cfg.unstructured_ops == ()
