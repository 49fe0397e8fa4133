"""Global restoration stages (paper §3.1-3.2): encode with VAE_A, map, decode with VAE_B.

Images are NCHW float 0..1 RGB; the networks see ``[-1, 1]``. The latent carries what a decoder
needs to give back an image of the size that was encoded, and its domain, so that a mapping
cannot be applied twice and a clean latent is never mapped again.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.resample import pil_resize, round_to_multiple
from ..loading import ModelDescriptor
from ..runtime.checks import check_images, check_mask
from ..runtime.numerics import network_math
from ..runtime.progress import Progress, reporting
from ..runtime.strips import tiled_runner
from .tone import TONES, apply_tone, reference_stretch

__all__ = ["OldPhotoLatent", "encode_old", "map_latent", "decode_clean", "paint_holes",
           "quality_working_size", "reference_stretch", "LATENT_SCALE"]

LATENT_SCALE = 4  # the VAE downsamples twice


@dataclass(frozen=True)
class OldPhotoLatent:
    """A VAE latent with the facts needed downstream.

    Attributes:
        samples: ``[B, 64, h, w]``.
        domain: ``"old"`` (VAE_A encoding) or ``"clean"`` (after mapping).
        image_size: ``(H, W)`` of the image handed to :func:`encode_old`.
        working_size: ``(4h, 4w)``, the size actually encoded (``image_size`` resized or padded
            to a multiple of 4).
        padding: ``(bottom, right)`` pixels added by ``fit="pad"`` (zeros for ``"resize"``).
        source: ``[B, 3, 4h, 4w]`` the photo that was encoded, at the working size and before
            its scratches were painted, or None. The ``"anchor"`` output tone takes its
            global tone from it (:mod:`~oldphoto_core.stages.tone`): carried with the latent
            so that a decoder several nodes away anchors to exactly the encoded photo.
        source_mask: ``[B, 1, 4h, 4w]`` the scratch mask that was painted, or None: those
            pixels of ``source`` lend no tone.
    """

    samples: torch.Tensor
    domain: str
    image_size: tuple[int, int]
    working_size: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    source: torch.Tensor | None = None
    source_mask: torch.Tensor | None = None

    def as_dict(self) -> dict:
        """Plain-dict form (ComfyUI passes this between nodes)."""
        return {"samples": self.samples, "domain": self.domain, "image_size": self.image_size,
                "working_size": self.working_size, "padding": self.padding,
                "source": self.source, "source_mask": self.source_mask}

    @classmethod
    def from_dict(cls, d: dict) -> OldPhotoLatent:
        return cls(d["samples"], d["domain"], tuple(d["image_size"]), tuple(d["working_size"]),
                   tuple(d.get("padding", (0, 0))), d.get("source"), d.get("source_mask"))

    def items(self, start: int, stop: int) -> OldPhotoLatent:
        """Batch items ``start:stop`` (views, no copy)."""
        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[start:stop]
        return replace(self, samples=self.samples[start:stop], source=cut(self.source),
                       source_mask=cut(self.source_mask))

    def to(self, device: torch.device | str) -> OldPhotoLatent:
        """The same latent with its tensors on ``device``."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return replace(self, samples=self.samples.to(device), source=move(self.source),
                       source_mask=move(self.source_mask))

    @classmethod
    def cat(cls, parts: list[OldPhotoLatent]) -> OldPhotoLatent:
        """Join the batches of ``parts`` (latents of one size, e.g. chunks of one batch)."""
        def join(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
            return None if any(t is None for t in ts) else torch.cat(ts)
        return replace(parts[0], samples=torch.cat([p.samples for p in parts]),
                       source=join([p.source for p in parts]),
                       source_mask=join([p.source_mask for p in parts]))


def quality_working_size(h: int, w: int) -> tuple[int, int]:
    """The reference's quality-mode rule: each side rounded to a multiple of 4 (half to even)."""
    return max(4, round_to_multiple(h, 4)), max(4, round_to_multiple(w, 4))


def paint_holes(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set scratch pixels to white before encoding, as the reference does: ``x(1-m) + m``."""
    return image * (1 - mask) + mask


def _to_working(image: torch.Tensor, fit: str) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = image.shape[-2:]
    if h % LATENT_SCALE == 0 and w % LATENT_SCALE == 0:
        return image, (0, 0)
    if fit == "resize":
        return pil_resize(image, quality_working_size(h, w), "bilinear"), (0, 0)
    if fit == "pad":
        pb, pr = (-h) % LATENT_SCALE, (-w) % LATENT_SCALE
        return F.pad(image, (0, pr, 0, pb), mode="reflect"), (pb, pr)
    raise InputError(f"fit must be 'resize' or 'pad', got {fit!r}")


def _runner(tile: bool, model: ModelDescriptor):
    return tiled_runner(model.device) if tile else None


def encode_old(image: torch.Tensor, vae: ModelDescriptor, *, mask: torch.Tensor | None = None,
               fit: str = "resize", tile: bool = False) -> OldPhotoLatent:
    """Encode old photos into VAE_A's latent space.

    Args:
        image: ``[B, 3, H, W]`` RGB float 0..1.
        vae: VAE_A (``VAE_A_quality``).
        mask: optional ``[B, 1, H, W]`` scratch mask (1 = scratch); scratch pixels are painted
            white first, as the reference does before the partial non-local mapping.
        fit: sizes that are not multiples of 4 are ``"resize"``d (bilinear, the reference's
            rule) or reflect-``"pad"``ded (no resampling; cropped again when decoding).
        tile: run the network in exact strips (:mod:`oldphoto_core.runtime.strips`) to bound the
            memory of large scans; the result is the same up to float summation order.

    Returns:
        An :class:`OldPhotoLatent` in the ``"old"`` domain, carrying the unpainted photo (and
        the mask) at the working size for the decoder's output tone.
    """
    check_images(image, channels=(3,))
    source, padding = _to_working(image, fit)
    source_mask = None
    if mask is None:
        work = source
    else:
        mask = check_mask(mask, like=image)
        work, _ = _to_working(paint_holes(image, mask), fit)
        source_mask = _mask_to_working(mask, source.shape[-2:], padding)
    x = (work * 2 - 1).to(device=vae.device, dtype=vae.dtype)
    with network_math():
        z = vae.model.encode(x, _runner(tile, vae))
    return OldPhotoLatent(z, "old", tuple(image.shape[-2:]), tuple(work.shape[-2:]), padding,
                          source, source_mask)


def map_latent(latent: OldPhotoLatent, mapping: ModelDescriptor, *,
               mask: torch.Tensor | None = None, tile: bool = False,
               progress: Progress | None = None) -> OldPhotoLatent:
    """Translate an old-photo latent into the clean-photo latent space.

    Args:
        latent: from :func:`encode_old` (domain ``"old"``).
        mapping: a mapping network (quality, scratch or HR patch attention).
        mask: ``[B, 1, H, W]`` scratch mask at the *encoded image's* size (``image_size``),
            required by the scratch and HR mappings, ignored by the quality mapping. For the HR
            mapping the reference dilates it (3x3, 3 iterations) before encoding and mapping.
        tile: run the convolutional parts in exact strips; attention stays global.
        progress: ``progress(done, total)`` over the scratch mapping's attention queries (the
            step that takes minutes on large scans); it may raise to abort.

    Returns:
        An :class:`OldPhotoLatent` in the ``"clean"`` domain.
    """
    if latent.domain != "old":
        raise InputError(f"this latent is already in the {latent.domain!r} domain; map only "
                         "latents that VAE_A encoded from an old photo")
    z = latent.samples.to(device=mapping.device, dtype=mapping.dtype)
    net = mapping.model
    needs_mask = "mask" in mapping.arch.tags
    if needs_mask and mask is None:
        raise InputError(f"the {mapping.arch.title} needs a scratch mask")
    with network_math(), (reporting(progress) if progress is not None else nullcontext()):
        if needs_mask:
            m = _mask_at_working_size(mask, latent).to(device=z.device, dtype=z.dtype)
            out = net(z, m, _runner(tile, mapping))
        else:
            out = net(z, _runner(tile, mapping))
    return replace(latent, samples=out, domain="clean")


def _mask_at_working_size(mask: torch.Tensor, latent: OldPhotoLatent) -> torch.Tensor:
    m = mask[:, None] if mask.ndim == 3 else mask
    if tuple(m.shape[-2:]) != latent.image_size:
        raise InputError(f"mask size {tuple(m.shape[-2:])} differs from the encoded image size "
                         f"{latent.image_size}")
    return _mask_to_working(m, latent.working_size, latent.padding)


def _mask_to_working(mask: torch.Tensor, working_size: tuple[int, int],
                     padding: tuple[int, int]) -> torch.Tensor:
    """``[B, 1, H, W]`` mask at the encoded image's size -> the working size, as the image
    went there: replicate-padded, or nearest-resized (a mask stays binary)."""
    if tuple(mask.shape[-2:]) == tuple(working_size):
        return mask.float()
    if any(padding):
        pb, pr = padding
        return F.pad(mask.float(), (0, pr, 0, pb), mode="replicate")
    return F.interpolate(mask.float(), tuple(working_size), mode="nearest")


def decode_clean(latent: OldPhotoLatent, vae: ModelDescriptor, *, tone: str = "reference",
                 restore_size: bool = True, tile: bool = False) -> torch.Tensor:
    """Decode a clean latent with VAE_B to an RGB image in 0..1.

    Args:
        latent: a ``"clean"`` latent from :func:`map_latent`.
        vae: VAE_B (``VAE_B_quality`` for the quality mapping, ``VAE_B_scratch`` for the others).
        tone: the output tone (:func:`~oldphoto_core.stages.tone.apply_tone`, at the working
            size): ``"reference"`` (min-max stretch as the reference saves its PNGs),
            ``"anchor"`` (the tone of the photo the latent carries, :attr:`OldPhotoLatent.source`)
            or ``"none"`` (``(y + 1) / 2`` clamped).
        restore_size: give back ``latent.image_size`` (undo the multiple-of-4 resize or padding);
            ``False`` keeps the working size (what the reference writes).
        tile: run the decoder in exact strips to bound memory.

    Returns:
        ``[B, 3, H, W]`` float 0..1.
    """
    if latent.domain != "clean":
        raise InputError("decode_clean expects a mapped latent (domain 'clean'); run the "
                         "mapping first")
    if tone not in TONES:
        raise InputError(f"tone must be one of {TONES}, got {tone!r}")
    if tone == "anchor" and latent.source is None:
        raise InputError("tone 'anchor' takes the tone of the encoded photo, and this latent "
                         "carries none: encode with encode_old, or use tone 'reference'")
    z = latent.samples.to(device=vae.device, dtype=vae.dtype)
    with network_math():
        y = vae.model.decode(z, _runner(tile, vae)).float().add_(1).div_(2)
    if tone == "anchor":
        source = latent.source.to(y.device)
        mask = None if latent.source_mask is None else latent.source_mask.to(y.device)
        y = apply_tone(y, tone, source, mask)
    else:
        y = apply_tone(y, tone)
    if not restore_size or latent.working_size == latent.image_size:
        return y
    if any(latent.padding):
        h, w = latent.image_size
        return y[..., :h, :w]
    return pil_resize(y, latent.image_size, "bicubic")
