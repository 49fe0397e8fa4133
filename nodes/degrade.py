"""``OldPhotoDegrade``: synthesise old-photo damage with its ground-truth mask (paper §4.2), to
make training pairs or to test a restoration graph."""

from __future__ import annotations

import json

import torch

from oldphoto_core.degrade import DEFAULT_CONFIG, DegradeConfig, degrade
from oldphoto_core.errors import InputError

from .convert import image_to_nchw, nchw_to_image, nchw_to_mask
from .runtime import each_image
from .types import CATEGORY, FLOAT, IMAGE, INT, MASK, STRING

__all__ = ["DEGRADE_NODES", "OldPhotoDegrade", "build_config"]

D = DEFAULT_CONFIG
SEED_MAX = 0xFFFFFFFFFFFFFFFF

# widget -> (DegradeConfig field, 0 = lower / 1 = upper end of the range)
_RANGE_WIDGETS = {
    "noise_sigma_min": ("noise_sigma_255", 0), "noise_sigma_max": ("noise_sigma_255", 1),
    "blur_sigma_min": ("gaussian_blur_sigma", 0), "blur_sigma_max": ("gaussian_blur_sigma", 1),
    "jpeg_quality_min": ("jpeg_quality", 0), "jpeg_quality_max": ("jpeg_quality", 1),
    "scratch_count_min": ("scratch_count", 0), "scratch_count_max": ("scratch_count", 1),
    "opacity_min": ("blend_opacity", 0), "opacity_max": ("blend_opacity", 1),
}
_INT_FIELDS = {"jpeg_quality", "scratch_count", "hole_count"}


def _float(default: float, lo: float, hi: float, step: float, tip: str):
    return (FLOAT, {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tip})


def _int(default: int, lo: int, hi: int, tip: str):
    return (INT, {"default": default, "min": lo, "max": hi, "tooltip": tip})


def build_config(op_drop_prob: float = D.op_drop_prob, color_jitter: float = 20.0,
                 dust_density_max: float = D.dust_density[1],
                 hole_count_max: int = D.hole_count[1], config_json: str = "",
                 **ranges) -> DegradeConfig:
    """The :class:`DegradeConfig` of the node's widgets (``config_json`` applied last).

    Raises:
        InputError: a range with min > max, a value out of bounds, bad JSON or an unknown field.
    """
    fields: dict = {}
    for widget, value in ranges.items():
        if widget not in _RANGE_WIDGETS:
            raise InputError(f"Old Photo Degrade: unknown input {widget!r}")
        name, end = _RANGE_WIDGETS[widget]
        pair = list(fields.get(name, getattr(D, name)))
        pair[end] = int(value) if name in _INT_FIELDS else float(value)
        fields[name] = tuple(pair)
    fields["op_drop_prob"] = float(op_drop_prob)
    fields["color_jitter_255"] = (-float(color_jitter), float(color_jitter))
    fields["dust_density"] = (D.dust_density[0], float(dust_density_max))
    fields["hole_count"] = (D.hole_count[0], int(hole_count_max))
    text = (config_json or "").strip()
    if text:
        try:
            extra = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"Old Photo Degrade: config_json is not valid JSON: {exc}") from exc
        if not isinstance(extra, dict):
            raise InputError("Old Photo Degrade: config_json must be a JSON object of "
                             "DegradeConfig fields, e.g. {\"crack_count\": [0, 5]}")
        fields.update(extra)
    data = D.to_dict()
    data.update(fields)
    return DegradeConfig.from_dict(data)


class OldPhotoDegrade:
    DISPLAY_NAME = "Old Photo Degrade"
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = (IMAGE, MASK, STRING)
    RETURN_NAMES = ("image", "defect_mask", "params")
    OUTPUT_TOOLTIPS = (
        "The photos with synthetic old-photo damage.",
        "Ground-truth mask of the structured damage (scratches, cracks, dust, holes): the "
        "target of the scratch detector.",
        "Everything that was drawn, per image, as JSON (for reproducibility).")
    DESCRIPTION = ("Ages clean photos as the paper's training data recipe: noise, blur, JPEG, "
                   "colour jitter in random order, plus scratches, cracks, dust, creases and "
                   "holes with their mask. Same seed, same damage.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": (IMAGE, {"tooltip": "Clean photos to age (any batch)."}),
                "seed": (INT, {"default": 0, "min": 0, "max": SEED_MAX,
                               "control_after_generate": True,
                               "tooltip": "Same seed, same damage (image i of a batch gets "
                                          "its own)."}),
                "noise_sigma_min": _float(D.noise_sigma_255[0], 0, 255, 0.5,
                                          "Gaussian noise std, lower end (0..255 scale)."),
                "noise_sigma_max": _float(D.noise_sigma_255[1], 0, 255, 0.5,
                                          "Gaussian noise std, upper end (paper: 5..50)."),
                "blur_sigma_min": _float(D.gaussian_blur_sigma[0], 0.001, 64, 0.1,
                                         "Gaussian blur sigma in px, lower end."),
                "blur_sigma_max": _float(D.gaussian_blur_sigma[1], 0.001, 64, 0.1,
                                         "Gaussian blur sigma in px, upper end (paper: 1..5)."),
                "jpeg_quality_min": _int(D.jpeg_quality[0], 1, 100,
                                         "JPEG quality, lower end (paper: 40..100)."),
                "jpeg_quality_max": _int(D.jpeg_quality[1], 1, 100, "JPEG quality, upper end."),
                "color_jitter": _float(D.color_jitter_255[1], 0, 255, 1,
                                       "Per-channel colour shift up to +-this (paper: 20)."),
                "op_drop_prob": _float(D.op_drop_prob, 0, 1, 0.05,
                                       "Chance that each unstructured op is skipped (paper: "
                                       "0.3)."),
                "scratch_count_min": _int(D.scratch_count[0], 0, 1000, "Scratches, lower end."),
                "scratch_count_max": _int(D.scratch_count[1], 0, 1000, "Scratches, upper end."),
                "opacity_min": _float(D.blend_opacity[0], 0, 1, 0.05,
                                      "Opacity of the damage textures, lower end."),
                "opacity_max": _float(D.blend_opacity[1], 0, 1, 0.05,
                                      "Opacity of the damage textures, upper end."),
                "dust_density_max": _float(D.dust_density[1], 0, 1e5, 10,
                                           "Dust specks per 512x512 px, upper end."),
                "hole_count_max": _int(D.hole_count[1], 0, 100,
                                       "Holes/torn corners, upper end."),
            },
            "optional": {
                "config_json": (STRING, {
                    "default": "", "multiline": True,
                    "tooltip": "Any other DegradeConfig fields as JSON, applied last, e.g. "
                               "{\"crack_count\": [0, 5], \"sepia_prob\": 0.5}."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, noise_sigma_min=None, noise_sigma_max=None, blur_sigma_min=None,
                        blur_sigma_max=None, jpeg_quality_min=None, jpeg_quality_max=None,
                        color_jitter=None, op_drop_prob=None, scratch_count_min=None,
                        scratch_count_max=None, opacity_min=None, opacity_max=None,
                        dust_density_max=None, hole_count_max=None, config_json=""):
        values = {k: v for k, v in locals().items() if k != "cls" and v is not None}
        try:
            build_config(**values)
        except (InputError, TypeError, ValueError) as exc:
            return str(exc)
        return True

    def run(self, image, seed, config_json="", **widgets):
        cfg = build_config(config_json=config_json, **widgets)
        images = image_to_nchw(image)
        b = images.shape[0]
        res = each_image(b, lambda i: degrade(images[i:i + 1], seed=int(seed), config=cfg,
                                              index_offset=i), node=self.DISPLAY_NAME)
        return (nchw_to_image(torch.cat([r.image for r in res])),
                nchw_to_mask(torch.cat([r.mask for r in res])),
                json.dumps([r.params[0] for r in res], indent=1, sort_keys=True))


DEGRADE_NODES = {"OldPhotoDegrade": OldPhotoDegrade}
