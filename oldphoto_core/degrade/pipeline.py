"""``degrade``: make old, damaged photos from clean ones, with the ground-truth defect mask.

Per batch item, in this order (paper §4.2, plus the ageing the paper gets from real textures):

1. ageing of the print: vignette, sepia toning (RGB), uneven fading towards the paper tone;
2. structured damage: procedural scratches, cracks, dust and creases, elastically distorted and
   blended (screen / lighten / addition at a random opacity), then feathered holes revealing
   the paper. **The mask** is taken here: the pixels whose value this step changed by more than
   ``config.mask_threshold`` in some channel, where a texture or hole was drawn;
3. global old look: film grain and a soft blur;
4. unstructured damage: noise, Gaussian blur, JPEG, colour jitter, box blur in random order,
   each dropped with ``config.op_drop_prob``.

With ``config.mask_visible_threshold`` set, the mask then keeps only the pixels where the
damage still shows after steps 3-4 (the same steps over the undamaged print differ there by
more than that threshold): scratches a heavy blur or noise has hidden leave it, as no detector
can find them.

Randomness: item ``i`` draws everything on the CPU from streams seeded by
``(seed, index_offset + i, stream)`` (see :mod:`._random`), so items are independent, results
do not depend on the batch they are in, and the same seed gives the same bytes on one device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..runtime.checks import check_images
from ._random import Stream, bernoulli, choice, item_rng, smooth_noise, uniform
from .config import DEFAULT_CONFIG, DegradeConfig
from .structured import (
    blend_texture,
    composite_paper,
    defect_mask,
    fade,
    film_grain,
    sepia,
    soft_blur,
    vignette,
)
from .textures import (
    draw_cracks,
    draw_creases,
    draw_dust,
    draw_holes,
    draw_scratches,
    elastic_distort,
    paper_texture,
    paper_tone,
    texture_scale,
)
from .unstructured import apply_unstructured, sample_unstructured

__all__ = ["degrade", "DegradeResult", "MIN_SIZE", "RANGE_TOLERANCE"]

MIN_SIZE = 16  #: smallest accepted height and width
RANGE_TOLERANCE = 1e-3  #: how far outside [0, 1] input values may stray (then clamped)
_LAYERS = ("scratches", "cracks", "dust", "creases")


@dataclass(frozen=True)
class DegradeResult:
    """The output of :func:`degrade`.

    Attributes:
        image: ``[B, C, H, W]`` degraded image, input's dtype and device, in [0, 1].
        mask: ``[B, 1, H, W]`` ground-truth defect mask, same dtype, values 0 or 1.
        params: one JSON-serialisable dict per batch item with everything that was drawn.
    """

    image: Tensor
    mask: Tensor
    params: list[dict[str, Any]]


def _check_input(image: Any, seed: Any, index_offset: Any) -> None:
    check_images(image, name="degrade", min_side=MIN_SIZE, slack=RANGE_TOLERANCE)
    for name, v in (("seed", seed), ("index_offset", index_offset)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise InputError(f"degrade: expected {name} to be an int >= 0, found {v!r}")


def degrade(image: Tensor, *, seed: int, config: DegradeConfig = DEFAULT_CONFIG,
            index_offset: int = 0) -> DegradeResult:
    """Synthesise old-photo damage (paper §4.2) with its ground-truth defect mask.

    Args:
        image: ``[B, C, H, W]`` float in 0..1; C = 1 (grey: the damage stays grey), 3 (RGB) or
            4 (RGBA: alpha passes through untouched). Any device; computed in float32.
        seed: int >= 0; the same seed gives the same bytes on the same device.
        config: the ranges (:class:`DegradeConfig`, the paper's values by default).
        index_offset: item ``i`` is damaged as item ``index_offset + i`` of a larger batch, so
            that a batch can be processed in pieces with identical results.

    Returns:
        :class:`DegradeResult` with ``image`` (shape, dtype and device of the input), ``mask``
        ``[B, 1, H, W]`` (1 where structured damage is visible) and ``params``.

    Raises:
        InputError: not a 4-D float tensor, C not in {1, 3, 4}, an empty batch, H or W below
            16, values outside [0, 1], or a negative seed.

    Example:
        >>> img = torch.rand(2, 3, 64, 64)
        >>> out = degrade(img, seed=7)
        >>> out.image.shape, out.mask.shape, len(out.params)
        (torch.Size([2, 3, 64, 64]), torch.Size([2, 1, 64, 64]), 2)
    """
    _check_input(image, seed, index_offset)
    if not isinstance(config, DegradeConfig):
        raise InputError(f"degrade: expected config to be a DegradeConfig, found "
                         f"{type(config).__name__}")
    b, c, h, w = image.shape
    out = torch.empty_like(image)
    mask = torch.empty((b, 1, h, w), dtype=image.dtype, device=image.device)
    params = []
    colour_channels = min(c, 3)
    with torch.no_grad():  # not differentiable (JPEG, uint8 textures); keeps no graph
        for i in range(b):
            item = image[i:i + 1, :colour_channels].float().clamp(0.0, 1.0)
            damaged, m, p = _degrade_item(item, int(seed), int(index_offset) + i, config)
            out[i:i + 1, :colour_channels] = damaged.to(image.dtype)
            mask[i:i + 1] = m.to(image.dtype)
            params.append(p)
        if c == 4:  # alpha passes through bit-exact
            out[:, 3:] = image[:, 3:]
    return DegradeResult(image=out, mask=mask, params=params)


def _degrade_item(image: Tensor, seed: int, index: int,
                  config: DegradeConfig) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """One item ``[1, C, H, W]`` (C = 1 or 3, float32 in 0..1) → degraded, mask, params."""
    _, c, h, w = image.shape
    dev = image.device
    params: dict[str, Any] = {"seed": seed, "index": index, "size": [h, w], "channels": c}

    # Paper colour: the tone holes reveal, scratches show and the print fades to.
    paper_rng = item_rng(seed, index, Stream.PAPER)
    brightness = uniform(paper_rng, config.paper_brightness)
    warmth = uniform(paper_rng, config.paper_warmth)
    tone_np = paper_tone(brightness, warmth, c)
    tone = torch.from_numpy(tone_np).to(dev)
    params["paper"] = {"brightness": brightness, "warmth": warmth}

    # 1. Ageing of the print (global, not in the mask).
    aged, params["aging"] = _age(image, item_rng(seed, index, Stream.AGING), config, tone)

    # 2. Structured damage.
    layers, tex_params = _draw_layers(seed, index, h, w, config)
    params.update(tex_params)
    rng = item_rng(seed, index, Stream.BLEND)
    blends = {name: {"mode": choice(rng, config.blend_modes),
                     "opacity": uniform(rng, config.blend_opacity)} for name in _LAYERS}
    params["blend"] = blends
    hole_alpha, params["holes"] = draw_holes(item_rng(seed, index, Stream.HOLES), h, w, config)
    paper = paper_texture(paper_rng, h, w, tone_np) if params["holes"] else None
    damaged, mask = _apply_structured(aged, layers, hole_alpha if params["holes"] else None,
                                      paper, tone, blends, config.mask_threshold)
    params["mask_threshold"] = config.mask_threshold

    # 3. Global old look and 4. unstructured damage (not in the mask).
    out = _finish(damaged, seed, index, config, params).clamp_(0.0, 1.0)
    if config.mask_visible_threshold is not None and bool(mask.any()):
        # The same finish (same random streams) over the undamaged print: what differs is
        # what the structured damage still shows after blur, noise and JPEG.
        plain = _finish(aged, seed, index, config, {}).clamp_(0.0, 1.0)
        shown = (out - plain).abs().amax(dim=1, keepdim=True) > config.mask_visible_threshold
        mask = mask & shown
    params["mask_fraction"] = int(mask.sum()) / mask.numel()  # exact: same on every device
    return out, mask, params


def _finish(image: Tensor, seed: int, index: int, config: DegradeConfig,
            params: dict[str, Any]) -> Tensor:
    """Steps 3 and 4 on ``image`` ``[1, C, H, W]``, drawing from their own streams (so two
    calls draw the same grain, blur and noise); what was drawn goes into ``params``."""
    c = image.shape[1]
    rng = item_rng(seed, index, Stream.GLOBAL)
    grain_sigma, grain_size = uniform(rng, config.grain_sigma_255), uniform(rng, config.grain_size)
    blur_on = bernoulli(rng, config.global_blur_prob)
    blur_sigma = uniform(rng, config.global_blur_sigma)
    params["grain"] = {"sigma_255": grain_sigma, "size": grain_size}
    params["global_blur"] = {"applied": blur_on, "sigma": blur_sigma}
    out = image
    if grain_sigma > 0:
        out = film_grain(out, grain_sigma, grain_size, rng)
    if blur_on and blur_sigma > 0:
        out = soft_blur(out, blur_sigma)
    plan = sample_unstructured(item_rng(seed, index, Stream.UNSTRUCTURED), config, c)
    params["unstructured"] = plan
    return apply_unstructured(out, plan, item_rng(seed, index, Stream.UNSTRUCTURED_NOISE))


def _apply_structured(aged: Tensor, layers: np.ndarray | None, hole_alpha: np.ndarray | None,
                      paper: np.ndarray | None, tone: Tensor, blends: dict[str, dict[str, Any]],
                      threshold: float) -> tuple[Tensor, Tensor]:
    """Blend the texture layers and the holes over ``aged`` ``[1, C, H, W]``; take the mask.

    Only the pixels where something was drawn are gathered and composited (a few percent of the
    image), as a ``[1, C, N, 1]`` strip; everything else is ``aged`` unchanged by construction.
    """
    _, c, h, w = aged.shape
    dev = aged.device
    drawn = np.zeros(h * w, bool)
    if layers is not None:  # four uint8 layers per pixel read as one uint32: non-zero = drawn
        drawn |= layers.reshape(h * w, 4).view(np.uint32)[:, 0] != 0
    if hole_alpha is not None:
        drawn |= hole_alpha.reshape(-1) > 0
    idx_np = np.flatnonzero(drawn)
    n = idx_np.size
    damaged = aged.clone()
    mask = torch.zeros((1, 1, h, w), dtype=torch.bool, device=dev)
    if n == 0:
        return damaged, mask
    idx = torch.from_numpy(idx_np).to(dev)
    before = aged.reshape(c, h * w)[:, idx].view(1, c, n, 1)
    after = before
    if layers is not None:
        tex = torch.from_numpy(layers.reshape(h * w, 4)[idx_np]).to(dev)  # [N, 4] uint8
        for k, name in enumerate(_LAYERS):
            if bool(tex[:, k].any()):
                t = tex[:, k].float().div_(255.0).view(1, 1, n, 1)
                after = blend_texture(after, t, tone, blends[name]["mode"],
                                      blends[name]["opacity"])
    if hole_alpha is not None and paper is not None:
        a = torch.from_numpy(hole_alpha.reshape(-1)[idx_np]).to(dev).view(1, 1, n, 1)
        p = torch.from_numpy(paper.reshape(c, h * w)[:, idx_np]).to(dev).view(1, c, n, 1)
        after = composite_paper(after, a, p)
    after = after.clamp(0.0, 1.0)
    damaged.view(c, h * w)[:, idx] = after.view(c, n)
    everywhere = torch.ones((1, 1, n, 1), dtype=torch.bool, device=dev)
    mask.view(-1)[idx] = defect_mask(before, after, everywhere, threshold).view(n)
    return damaged, mask


def _age(image: Tensor, rng: np.random.Generator, config: DegradeConfig,
         tone: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """Vignette, sepia (RGB only) and uneven fading, each with its probability."""
    _, c, h, w = image.shape
    p: dict[str, Any] = {}
    on, s = bernoulli(rng, config.vignette_prob), uniform(rng, config.vignette_strength)
    p["vignette"] = {"applied": on, "strength": s}
    if on:
        image = vignette(image, s)
    on, s = bernoulli(rng, config.sepia_prob), uniform(rng, config.sepia_strength)
    p["sepia"] = {"applied": on and c == 3, "strength": s}
    if on and c == 3:
        image = sepia(image, s)
    on, s = bernoulli(rng, config.fade_prob), uniform(rng, config.fade_strength)
    p["fade"] = {"applied": on, "strength": s}
    if on:
        # Uneven: the strength varies by ±50 % over a few large blotches.
        field = np.clip(1.0 + 0.5 * smooth_noise(rng, h, w, cells=2, octaves=2), 0.0, 2.0) * s
        field_t = torch.from_numpy(np.minimum(field, 1.0)).to(image.device).view(1, 1, h, w)
        image = fade(image, field_t, tone)
    return image, p  # each step mixes values in [0, 1]: no clamp needed


def _draw_layers(seed: int, index: int, h: int, w: int,
                 config: DegradeConfig) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The four texture layers ``uint8 [H, W, 4]`` (None when all are empty), warped."""
    scratches, p_scratches = draw_scratches(item_rng(seed, index, Stream.SCRATCHES), h, w, config)
    cracks, p_cracks = draw_cracks(item_rng(seed, index, Stream.CRACKS), h, w, config)
    dust, p_dust = draw_dust(item_rng(seed, index, Stream.DUST), h, w, config)
    creases, p_creases = draw_creases(item_rng(seed, index, Stream.CREASES), h, w, config)
    rng = item_rng(seed, index, Stream.ELASTIC)
    alpha, sigma = uniform(rng, config.elastic_alpha), uniform(rng, config.elastic_sigma)
    params = {"scratches": p_scratches, "cracks": p_cracks, "dust": p_dust,
              "creases": p_creases, "elastic": {"alpha": alpha, "sigma": sigma}}
    layers = np.stack([scratches, cracks, dust, creases], axis=-1)
    if not layers.any():
        return None, params
    scale = texture_scale(h, w, config)
    return elastic_distort(layers, rng, alpha * scale, sigma * scale), params
