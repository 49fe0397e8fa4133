"""The ranges of the degradation synthesis, as one frozen, validated, serialisable dataclass.

Every field is a range, a set of choices or a probability; the defaults are the paper's values
(Wan et al., §4.2) where the paper gives one, and values tuned by eye on real scans for the
procedural textures it does not specify. Units:

* ``*_255`` values are on the 0..255 scale of 8-bit images (as the paper states them);
* pixel sizes of textures (widths, radii, feathering, elastic amplitude) are pixels of an image
  whose short side is ``reference_size`` (512); they scale with the image's short side, or with
  ``texture_scale`` when it is set (a crop damaged at the pixel scale of its whole photo);
* lengths of scratches, cracks and holes are fractions of the image's short side;
* dust densities are specks per ``reference_size``² pixels;
* integer ranges are inclusive at both ends, float ranges draw uniformly in ``[lo, hi]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = ["DegradeConfig", "UNSTRUCTURED_OPS", "BLEND_MODES", "DEFAULT_CONFIG"]

#: The unstructured operations of the paper, in their canonical order.
UNSTRUCTURED_OPS: tuple[str, ...] = ("noise", "gaussian_blur", "jpeg", "color_jitter", "box_blur")
#: Blend modes of the scratch/paper textures (all lighten the photo, as in the paper).
BLEND_MODES: tuple[str, ...] = ("screen", "lighten", "addition")


@dataclass(frozen=True)
class DegradeConfig:
    """All ranges of :func:`~oldphoto_core.degrade.degrade`, with the paper's defaults.

    Unstructured damage (paper §4.2; applied in random order, each dropped with
    ``op_drop_prob``):

    Attributes:
        unstructured_ops: which of ``noise, gaussian_blur, jpeg, color_jitter, box_blur`` may run.
        op_drop_prob: probability that each enabled unstructured op is skipped (paper: 0.3).
        noise_sigma_255: std of additive Gaussian white noise, per channel (paper: (5, 50)).
        gaussian_blur_kernels: odd kernel sizes of the Gaussian blur (paper: {3, 5, 7}).
        gaussian_blur_sigma: std of the Gaussian blur in pixels (paper: (1, 5)).
        jpeg_quality: quality of a real JPEG encode/decode round trip (paper: (40, 100)).
        color_jitter_255: shift added to each channel independently (paper: (-20, 20)).
        box_blur_kernels: odd kernel sizes of the box blur (lens defocus).

    Structured damage (drawn as white-ish textures, elastically distorted, blended with
    ``blend_modes`` at ``blend_opacity``; these make the ground-truth mask):

    Attributes:
        scratch_count: thin, gently curved, sometimes broken scratches per image.
        scratch_width: scratch width (px at ``reference_size``).
        scratch_length: scratch length (fraction of the short side).
        scratch_curvature: total turn of a scratch along its length (radians, random sign).
        scratch_intensity: brightness of a scratch texture (0..1).
        scratch_vertical_prob: probability that a scratch runs roughly vertically (film scratch).
        crack_count: branching cracks per image.
        crack_branches: branches added to each crack.
        crack_width: width of a crack's trunk (px at ``reference_size``); branches get thinner.
        crack_length: length of a crack's trunk (fraction of the short side).
        crack_intensity: brightness of a crack texture (0..1).
        dust_density: dust specks and fibres per ``reference_size``² pixels.
        dust_radius: speck radius (px at ``reference_size``).
        dust_intensity: brightness of a speck (0..1).
        crease_count: folds crossing the whole photo.
        crease_band_width: width of the soft band of a fold (px at ``reference_size``).
        crease_band_intensity: brightness of that band (0..1).
        crease_core_width: width of the fold's jagged core line (px at ``reference_size``).
        crease_core_intensity: brightness of the core line and its flakes (0..1).
        elastic_alpha: amplitude of the elastic distortion of the textures (px at reference).
        elastic_sigma: smoothness (correlation length) of that distortion (px at reference).
        blend_modes: modes drawn for each texture layer (paper: screen, lighten-only, addition).
        blend_opacity: opacity of each texture layer (paper: "random level of opacity").
        hole_count: feathered holes that reveal the paper.
        hole_radius: mean radius of a hole (fraction of the short side).
        hole_feather: feathering of a hole's edge (px at ``reference_size``).
        hole_edge_prob: probability that a hole sits on the photo's border (a torn edge/corner).
        paper_brightness: brightness of the paper revealed under holes (0..1).
        paper_warmth: yellowing of the paper (0 = neutral grey/white, 1 = strongly yellow).

    Global "old" look (not defects; never in the mask):

    Attributes:
        vignette_prob, vignette_strength: darkening of the corners (fraction, 0..1).
        sepia_prob, sepia_strength: mix towards a sepia toning (RGB only).
        fade_prob, fade_strength: mix towards the paper tone, unevenly (low-frequency field).
        grain_sigma_255: std of monochrome film grain (0..255 scale).
        grain_size: blur of the grain in pixels (grain "size").
        global_blur_prob, global_blur_sigma: a soft Gaussian blur after the textures.

    Mask and scale:

    Attributes:
        mask_threshold: a pixel is in the mask when the structured layer changed some channel by
            more than this (0..1 scale; 0.04 ≈ 10/255, about what is visible on a print) and a
            texture or hole was actually drawn there.
        mask_visible_threshold: None (default): the mask is the structured layer's change,
            whatever follows. A number: keep only the pixels where the damage still changes
            the finished image by more than this (0..1 scale) against the same global and
            unstructured steps over the undamaged print; damage that blur, noise or JPEG
            hid is left out. For training a detector (it cannot learn what it cannot see).
            Costs a second pass of steps 3-4.
        reference_size: the short side (px) at which texture pixel sizes are given.
        texture_scale: pixels of the image per pixel at ``reference_size``; None (default)
            takes the image's short side / ``reference_size``. Set it when the image is a crop
            of a larger photo: a 128 px crop of a 512 px photo is otherwise damaged as a whole
            128 px photo, with scratches, dust and cracks a quarter as wide (most under one
            pixel, then lost in the blur that follows).
    """

    unstructured_ops: tuple[str, ...] = UNSTRUCTURED_OPS
    op_drop_prob: float = 0.3
    noise_sigma_255: tuple[float, float] = (5.0, 50.0)
    gaussian_blur_kernels: tuple[int, ...] = (3, 5, 7)
    gaussian_blur_sigma: tuple[float, float] = (1.0, 5.0)
    jpeg_quality: tuple[int, int] = (40, 100)
    color_jitter_255: tuple[float, float] = (-20.0, 20.0)
    box_blur_kernels: tuple[int, ...] = (3, 5, 7)

    scratch_count: tuple[int, int] = (1, 8)
    scratch_width: tuple[float, float] = (0.6, 2.5)
    scratch_length: tuple[float, float] = (0.2, 1.2)
    scratch_curvature: tuple[float, float] = (0.0, 0.8)
    scratch_intensity: tuple[float, float] = (0.5, 1.0)
    scratch_vertical_prob: float = 0.5
    crack_count: tuple[int, int] = (0, 3)
    crack_branches: tuple[int, int] = (2, 12)
    crack_width: tuple[float, float] = (0.8, 2.5)
    crack_length: tuple[float, float] = (0.15, 0.6)
    crack_intensity: tuple[float, float] = (0.6, 1.0)
    dust_density: tuple[float, float] = (0.0, 250.0)
    dust_radius: tuple[float, float] = (0.4, 2.5)
    dust_intensity: tuple[float, float] = (0.4, 1.0)
    crease_count: tuple[int, int] = (0, 2)
    crease_band_width: tuple[float, float] = (3.0, 12.0)
    crease_band_intensity: tuple[float, float] = (0.02, 0.12)
    crease_core_width: tuple[float, float] = (0.8, 2.2)
    crease_core_intensity: tuple[float, float] = (0.6, 1.0)
    elastic_alpha: tuple[float, float] = (0.0, 4.0)
    elastic_sigma: tuple[float, float] = (12.0, 40.0)
    blend_modes: tuple[str, ...] = BLEND_MODES
    blend_opacity: tuple[float, float] = (0.6, 1.0)
    hole_count: tuple[int, int] = (0, 1)
    hole_radius: tuple[float, float] = (0.02, 0.09)
    hole_feather: tuple[float, float] = (1.0, 6.0)
    hole_edge_prob: float = 0.5
    paper_brightness: tuple[float, float] = (0.78, 0.96)
    paper_warmth: tuple[float, float] = (0.0, 0.6)

    vignette_prob: float = 0.4
    vignette_strength: tuple[float, float] = (0.1, 0.5)
    sepia_prob: float = 0.3
    sepia_strength: tuple[float, float] = (0.3, 1.0)
    fade_prob: float = 0.5
    fade_strength: tuple[float, float] = (0.05, 0.35)
    grain_sigma_255: tuple[float, float] = (0.0, 10.0)
    grain_size: tuple[float, float] = (0.5, 1.2)
    global_blur_prob: float = 0.5
    global_blur_sigma: tuple[float, float] = (0.3, 1.2)

    mask_threshold: float = 0.04
    mask_visible_threshold: float | None = None
    reference_size: int = 512
    texture_scale: float | None = None

    def __post_init__(self) -> None:
        # Normalise sequences to tuples (from_dict hands lists) before validating.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradeConfig:
        """Build a config from :meth:`to_dict`'s output; missing keys keep their defaults.

        Raises:
            InputError: an unknown key, or a value that fails validation.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"DegradeConfig: unknown field(s) {unknown}; expected some of "
                             f"{sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> DegradeConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


# -- validation ----------------------------------------------------------------------------

# (lowest allowed lo, highest allowed hi) of each range field; None = unbounded.
_FLOAT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "noise_sigma_255": (0.0, 255.0), "gaussian_blur_sigma": (1e-3, 64.0),
    "color_jitter_255": (-255.0, 255.0), "scratch_width": (0.0, None),
    "scratch_length": (0.0, None), "scratch_curvature": (0.0, 2 * math.pi),
    "scratch_intensity": (0.0, 1.0), "crack_width": (0.0, None), "crack_length": (0.0, None),
    "crack_intensity": (0.0, 1.0), "dust_density": (0.0, 1e5), "dust_radius": (0.0, None),
    "dust_intensity": (0.0, 1.0), "crease_band_width": (0.0, None),
    "crease_band_intensity": (0.0, 1.0), "crease_core_width": (0.0, None),
    "crease_core_intensity": (0.0, 1.0),
    "elastic_alpha": (0.0, None), "elastic_sigma": (1.0, None), "blend_opacity": (0.0, 1.0),
    "hole_radius": (0.0, 1.0), "hole_feather": (0.0, None), "paper_brightness": (0.0, 1.0),
    "paper_warmth": (0.0, 1.0), "vignette_strength": (0.0, 1.0), "sepia_strength": (0.0, 1.0),
    "fade_strength": (0.0, 1.0), "grain_sigma_255": (0.0, 255.0), "grain_size": (0.0, 16.0),
    "global_blur_sigma": (0.0, 16.0),
}
_INT_RANGES: dict[str, tuple[int, int]] = {
    "jpeg_quality": (1, 100), "scratch_count": (0, 1000), "crack_count": (0, 100),
    "crack_branches": (0, 1000), "crease_count": (0, 100), "hole_count": (0, 100),
}
_KERNEL_SETS = ("gaussian_blur_kernels", "box_blur_kernels")
_PROBS = ("op_drop_prob", "scratch_vertical_prob", "hole_edge_prob", "vignette_prob",
          "sepia_prob", "fade_prob", "global_blur_prob")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_range(name: str, value: Any, bounds: tuple[Any, Any], integer: bool) -> None:
    kind = "int" if integer else "number"
    ok_type = (lambda x: isinstance(x, int) and not isinstance(x, bool)) if integer else _is_number
    if not (isinstance(value, tuple) and len(value) == 2 and all(ok_type(v) for v in value)):
        raise InputError(f"DegradeConfig.{name}: expected a pair (lo, hi) of {kind}s, "
                         f"found {value!r}")
    lo, hi = value
    if lo > hi:
        raise InputError(f"DegradeConfig.{name}: expected lo <= hi, found {value!r}")
    min_lo, max_hi = bounds
    if (min_lo is not None and lo < min_lo) or (max_hi is not None and hi > max_hi):
        raise InputError(f"DegradeConfig.{name}: expected values within "
                         f"[{min_lo}, {'inf' if max_hi is None else max_hi}], found {value!r}")


def _check_choices(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, tuple) or any(v not in allowed for v in value):
        raise InputError(f"DegradeConfig.{name}: expected a tuple of names from {allowed}, "
                         f"found {value!r}")
    if len(set(value)) != len(value):
        raise InputError(f"DegradeConfig.{name}: expected distinct names, found {value!r}")


def _validate(cfg: DegradeConfig) -> None:
    for name, bounds in _FLOAT_RANGES.items():
        _check_range(name, getattr(cfg, name), bounds, integer=False)
    for name, bounds in _INT_RANGES.items():
        _check_range(name, getattr(cfg, name), bounds, integer=True)
    for name in _KERNEL_SETS:
        ks = getattr(cfg, name)
        if not (isinstance(ks, tuple) and ks and all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 == 1
                and k <= 63 for k in ks)):
            raise InputError(f"DegradeConfig.{name}: expected a non-empty tuple of odd kernel "
                             f"sizes in [1, 63], found {ks!r}")
    for name in _PROBS:
        p = getattr(cfg, name)
        if not (_is_number(p) and 0.0 <= p <= 1.0):
            raise InputError(f"DegradeConfig.{name}: expected a probability in [0, 1], "
                             f"found {p!r}")
    _check_choices("unstructured_ops", cfg.unstructured_ops, UNSTRUCTURED_OPS)
    _check_choices("blend_modes", cfg.blend_modes, BLEND_MODES)
    if not cfg.blend_modes:
        raise InputError("DegradeConfig.blend_modes: expected at least one of "
                         f"{BLEND_MODES}, found ()")
    if not (_is_number(cfg.mask_threshold) and 0.0 <= cfg.mask_threshold < 1.0):
        raise InputError("DegradeConfig.mask_threshold: expected a number in [0, 1), "
                         f"found {cfg.mask_threshold!r}")
    v = cfg.mask_visible_threshold
    if v is not None and not (_is_number(v) and 0.0 <= v < 1.0):
        raise InputError("DegradeConfig.mask_visible_threshold: expected None or a number in "
                         f"[0, 1), found {v!r}")
    r = cfg.reference_size
    if not (isinstance(r, int) and not isinstance(r, bool) and r >= 16):
        raise InputError(f"DegradeConfig.reference_size: expected an int >= 16, found {r!r}")
    t = cfg.texture_scale
    if t is not None and not (_is_number(t) and 1e-3 <= t <= 1e3):
        raise InputError("DegradeConfig.texture_scale: expected None or a number in "
                         f"[0.001, 1000], found {t!r}")


#: The paper's defaults (a frozen instance, safe as a default argument).
DEFAULT_CONFIG = DegradeConfig()
