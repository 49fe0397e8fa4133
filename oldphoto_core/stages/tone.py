"""Output tone: how the decoded photo's brightness, contrast and colour cast are set.

Why this is a stage of its own: the VAEs' encoders start with a convolution followed by an
instance norm, which removes every feature channel's mean and scale. A global change of
brightness or contrast of the input (``a * x + b``, the same for all channels) therefore
does not reach the latent at all, nor does a fade towards a paper colour (``(1 - f) x + f p``): the
decoder has to *guess* the photo's global tone from what it learnt of
photos in general. The published networks, trained on many thousands of photos, guess well;
a small model trained on a few photos (the bundled default set) guesses badly, and measured
on held-out photos its reconstructions lose more PSNR to the wrong tone than they gain by
removing damage.

Three ways to set the tone of the decoded image ``y`` (NCHW, 0..1):

* ``"reference"``: the reference's save-time min-max stretch (:func:`reference_stretch`).
  Parity with the published pipeline needs it; it is the default of every published set.
* ``"anchor"``: the input's tone. ``y``'s low frequencies (a Gaussian of ``sigma`` =
  :data:`ANCHOR_SIGMA_FRACTION` of the short side) are replaced by the input's, ignoring
  masked (scratch) pixels of the input by normalised convolution, then the levels are
  stretched with :data:`ANCHOR_CLIP` of the pixels clipped at each end (a robust auto-levels
  that undoes the fade the input's tone brings with it). Inside a masked region wider than the
  Gaussian the tone is filled in from the region's surroundings (:func:`fill_from_surroundings`),
  never left to the decoder, whose guess of the tone is what the anchor is there to replace.
  A model set asks for it in its manifest (``"tone": "anchor"``); the bundled set does.
* ``"none"``: ``y`` as decoded, clamped to 0..1.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["TONES", "ANCHOR_CLIP", "ANCHOR_SIGMA_FRACTION", "apply_tone", "anchor_tone",
           "fill_from_surroundings", "reference_stretch", "stretch_levels"]

TONES = ("reference", "anchor", "none")
#: Gaussian sigma of the anchoring, as a fraction of the image's short side (2 px at 256 px).
#: Of 1/128, 1/64, 1/32 and 1/16 it scored best (PSNR and SSIM) on the held-out photos at
#: 256 px with the bundled clean-photo VAE.
ANCHOR_SIGMA_FRACTION = 1 / 128
#: Share of pixels clipped at each end by the anchored output's levels stretch.
ANCHOR_CLIP = 0.005
#: Histogram bins of the clipped levels: the quantiles are exact to 1/4096 of the range,
#: well below one 8-bit level, with memory that does not grow with the image.
_LEVEL_BINS = 4096
#: Where less than this share of a neighbourhood is unmasked input, the tone of the region's
#: surroundings takes over (a hole has no tone of its own to anchor to).
_MIN_UNMASKED = 0.5


def stretch_levels(image: torch.Tensor, clip: float = 0.0) -> torch.Tensor:
    """Map each batch item's levels (over all its channels) onto 0..1.

    Args:
        image: ``[B, C, H, W]``.
        clip: share of the item's values clipped at each end: ``0`` stretches the minimum to 0
            and the maximum to 1 exactly; otherwise the ``clip`` and ``1 - clip`` quantiles of
            the values clamped to 0..1, from a histogram (exact to 1/4096).
    """
    if not 0 <= clip < 0.5:
        raise InputError(f"clip must be in [0, 0.5), got {clip!r}")
    flat = image.flatten(1)
    if clip == 0:
        lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    else:
        lo, hi = _quantiles(flat.clamp(0, 1), clip)
    lo, hi = lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1)
    return (image.clamp(lo, hi) - lo) / torch.clamp(hi - lo, min=1e-5)


def _quantiles(flat: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``clip`` and ``1 - clip`` quantiles of values in 0..1 (``torch.quantile``
    refuses inputs of more than 16M values, a 2300 x 2300 RGB photo)."""
    los, his = [], []
    edges = torch.linspace(0, 1, _LEVEL_BINS + 1, device=flat.device)
    for row in flat:
        cdf = torch.histc(row.float(), _LEVEL_BINS, 0, 1).cumsum(0) / row.numel()
        los.append(edges[int(torch.searchsorted(cdf, clip))])
        his.append(edges[int(torch.searchsorted(cdf, 1 - clip)) + 1])
    return torch.stack(los).to(flat.dtype), torch.stack(his).to(flat.dtype)


def reference_stretch(image: torch.Tensor) -> torch.Tensor:
    """The reference's save-time min-max stretch, per batch item over all channels.

    ``torchvision.utils.save_image(normalize=True)`` maps each saved image's minimum to 0 and
    maximum to 1 (divisor at least 1e-5). It is a quirk of how the reference writes PNGs, kept by
    default so outputs match it; ``stretch="none"`` gives the network's output as it is.
    """
    return stretch_levels(image, 0.0)


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * int(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(image, (k, k), (sigma, sigma), border_type="reflect")


def anchor_tone(image: torch.Tensor, source: torch.Tensor, mask: torch.Tensor | None = None,
                *, sigma: float | None = None) -> torch.Tensor:
    """``image``'s detail over ``source``'s low frequencies.

    Args:
        image: ``[B, C, H, W]`` decoded photo.
        source: ``[B, C, H, W]`` the input it was restored from (same size).
        mask: optional ``[B, 1, H, W]``, 1 where the source is damaged (scratches): those
            pixels do not lend their tone; where a neighbourhood is mostly masked the tone
            comes from the surroundings of the masked region (the output's own low
            frequencies only when the whole photo is masked).
        sigma: Gaussian sigma in pixels; default :data:`ANCHOR_SIGMA_FRACTION` of the short
            side (at least 1).

    Returns:
        ``[B, C, H, W]`` clamped to 0..1.
    """
    if image.shape != source.shape:
        raise InputError(f"anchor_tone: image {tuple(image.shape)} and source "
                         f"{tuple(source.shape)} differ")
    if sigma is None:
        sigma = max(1.0, min(image.shape[-2:]) * ANCHOR_SIGMA_FRACTION)
    source = source.to(image.dtype)
    own = _blur(image, sigma)
    if mask is None:
        low = _blur(source, sigma)
    else:
        keep = 1 - mask.to(image.dtype)
        weight = _blur(keep, sigma)
        low = _blur(source * keep, sigma) / weight.clamp(min=1e-6)
        trust = (weight / _MIN_UNMASKED).clamp(max=1)
        # untrusted values start as the decoder's own, which is what a photo masked
        # everywhere keeps (it has no tone to lend); elsewhere the surroundings replace them
        low = fill_from_surroundings(torch.where(trust > 0, low, own), trust)
    return (image - own + low).clamp_(0, 1)


def fill_from_surroundings(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fill the untrusted parts of ``values`` from their trusted surroundings (pull-push).

    Why: a detected scratch or hole wider than the anchoring's Gaussian has no input tone
    nearby. Falling back to the decoder's own low frequencies painted such regions in the
    decoder's guessed colours (dark blotches over bright areas, measured on the held-out
    photos); their surroundings are the best estimate of the tone they hide, as for any
    inpainting of smooth content. Pull: halve the resolution repeatedly, each coarse pixel
    the weighted mean of its 2x2 block, trusted as far as the block's weights sum to 1. Push:
    from the coarsest level back up, each level keeps its own values as far as it trusts
    them and takes the bilinearly upsampled coarser level for the rest. The pyramid costs a
    third of the image's memory.

    Args:
        values: ``[B, C, H, W]``.
        weight: ``[B, 1, H, W]`` in 0..1, how far each value is trusted (0: fill it).

    Returns:
        ``[B, C, H, W]``: ``weight * values + (1 - weight) * (the surroundings' values)``;
        where an item trusts nothing at all, its values are returned unchanged.
    """
    levels = [(values, weight)]
    while max(levels[-1][0].shape[-2:]) > 1:  # down to one pixel, which any trust reaches
        v, w = levels[-1]
        k = tuple(2 if n > 1 else 1 for n in v.shape[-2:])
        total = F.avg_pool2d(w, k, ceil_mode=True, divisor_override=1)
        mean = F.avg_pool2d(v * w, k, ceil_mode=True, divisor_override=1) / total.clamp(min=1e-12)
        levels.append((mean, total.clamp(max=1)))
    filled = levels[-1][0]
    for v, w in reversed(levels[:-1]):
        up = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        filled = up.lerp_(v, w)  # w * v + (1 - w) * up, in up's memory
    trusts_some = (weight.flatten(1).amax(1) > 0).view(-1, 1, 1, 1)
    if bool(trusts_some.all()):
        return filled
    return torch.where(trusts_some, filled, values)


def apply_tone(image: torch.Tensor, tone: str, source: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Set the decoded ``image``'s tone (see the module's docstring); ``source`` (and
    ``mask``) are needed by ``"anchor"`` only."""
    if tone == "reference":
        return reference_stretch(image)
    if tone == "none":
        return image.clamp(0, 1)
    if tone == "anchor":
        if source is None:
            raise InputError("tone 'anchor' needs the input photo (source)")
        return stretch_levels(anchor_tone(image, source, mask), ANCHOR_CLIP)
    raise InputError(f"tone must be one of {TONES}, got {tone!r}")
