"""Global restoration as four composable nodes (paper §3.1-3.3): detect scratches, encode the old
photo with VAE_A, map the latent into the clean space, decode with VAE_B.

Each node runs the batch on the device in chunks that fit its free memory (the progress bar
moves and the cancel button works between chunks; the mapping's attention also reports inside a
chunk), retries a chunk that ran out of device memory in exact strips and then smaller, and
calls the core stage; no maths here.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.stages import (
    OldPhotoLatent,
    decode_clean,
    detect_scratches,
    dilate_mask,
    encode_old,
    map_latent,
)
from oldphoto_core.stages.scratch import detector_input_size
from oldphoto_core.stages.tone import TONES

from . import comfy_compat as compat
from .convert import fit_mask, image_to_nchw, mask_to_nchw, nchw_to_image, nchw_to_mask, to_rgb
from .runtime import (
    Steps,
    check_precision,
    expect_model,
    item_bytes,
    models_on_device,
    precision_input,
    run_in_chunks,
)
from .types import BOOLEAN, CATEGORY, FLOAT, IMAGE, INT, LATENT, MAPPING, MASK, SCRATCH_MODEL, VAE

log = logging.getLogger("oldphoto")

__all__ = ["RESTORATION_NODES", "OldPhotoDetectScratches", "OldPhotoLatentMap",
           "OldPhotoVAEDecodeClean", "OldPhotoVAEEncodeOld", "latent_from_payload"]


#: the Decode node's tone choice that follows the VAE's model set
_AUTO = "auto"
#: Detect Scratches' threshold that follows the detector's model set
_SET_THRESHOLD = 0.0


def latent_from_payload(payload: object, *, node: str) -> OldPhotoLatent:
    """The :class:`OldPhotoLatent` in an OLDPHOTO_LATENT dict (clear error otherwise)."""
    if not isinstance(payload, dict) or not {"samples", "domain", "image_size",
                                             "working_size"} <= payload.keys():
        raise InputError(f"{node}: expected an OLDPHOTO_LATENT from 'Encode Old Photo', got "
                         f"{type(payload).__name__}")
    return OldPhotoLatent.from_dict(payload)


def _payload(latent: OldPhotoLatent, **extra) -> dict:
    d = latent.to(compat.intermediate_device()).as_dict()
    d["samples"] = d["samples"].detach()
    d.update(extra)
    return d


def _here() -> torch.device:
    """Where results go as soon as they are computed (ComfyUI's intermediate device)."""
    return compat.intermediate_device()


def _pixels(size: tuple[int, int]) -> int:
    return int(size[0]) * int(size[1])


#: the restoration mode whose working memory a mapping network's run is sized by
_MAPPING_MODE = {"mapping_quality": "quality", "mapping_scratch": "scratch",
                 "mapping_hr": "hr"}


def _vae_hint(name: str) -> str | None:
    low = name.lower().replace("-", "_")
    if "vae_a" in low:
        return "a"
    if "vae_b" in low:
        return "b"
    return None


class OldPhotoDetectScratches:
    DISPLAY_NAME = "Detect Scratches"
    CATEGORY = CATEGORY
    FUNCTION = "detect"
    RETURN_TYPES = (MASK,)
    RETURN_NAMES = ("scratch_mask",)
    OUTPUT_TOOLTIPS = ("Scratch mask at the image size (1 = scratch, dust, tear), for 'Encode "
                       "Old Photo' and 'Old Photo Latent Map'.",)
    DESCRIPTION = ("Finds structured defects (scratches, dust, tears) with the scratch "
                   "detection U-Net of the paper.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (IMAGE, {"tooltip": "The old photos (any size, any batch)."}),
            "scratch_model": (SCRATCH_MODEL, {
                "tooltip": "From 'Load Old Photo Scratch Detector' (FT_Epoch_latest.pt)."}),
            "threshold": (FLOAT, {
                "default": _SET_THRESHOLD, "min": _SET_THRESHOLD, "max": 0.99, "step": 0.01,
                "tooltip": "Probability from which a pixel counts as a scratch (lower finds "
                           "more). 0: the threshold the detector's model set calibrated "
                           "(its manifest's scratch_threshold), else the reference's 0.4 "
                           "(published checkpoints)."}),
            "dilation": (INT, {
                "default": 0, "min": 0, "max": 16,
                "tooltip": "Grow the mask by this many 3x3 steps. The reference's HR mode uses "
                           "3; set it here so that Encode and Map see the same mask."}),
        }, "optional": {"precision": precision_input()}}

    def detect(self, image, scratch_model, threshold=_SET_THRESHOLD, dilation=0,
               precision="exact"):
        node = self.DISPLAY_NAME
        model = expect_model(scratch_model, "scratch_detector", node=node,
                             input_name="scratch_model")
        if not 0 <= float(threshold) < 1:
            raise InputError(f"{node}: threshold must be in [0, 1), got {threshold!r}")
        threshold = float(threshold) or model.scratch_threshold
        precision = check_precision(precision, node=node)
        images = image_to_nchw(image)
        steps = Steps(images.shape[0])
        # the U-Net runs at a short side of 256; the photo itself is read at its size
        h, w = images.shape[-2:]
        per_item = item_bytes("quality", _pixels(detector_input_size(h, w))) + 32 * h * w

        def run(start: int, stop: int, tile: bool) -> torch.Tensor:
            return detect_scratches(images[start:stop], model.descriptor,
                                    threshold=float(threshold),
                                    dilation=int(dilation)).to(_here())

        with models_on_device(model, memory_required=per_item, precision=precision) as device:
            masks = run_in_chunks(images.shape[0], run, steps=steps, device=device,
                                  per_item=per_item, can_tile=False, node=node)
        return (nchw_to_mask(torch.cat(masks)),)


class OldPhotoVAEEncodeOld:
    DISPLAY_NAME = "Encode Old Photo"
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The photo in VAE_A's latent space (domain 'old'), with its size, for "
                       "'Old Photo Latent Map'.",)
    DESCRIPTION = ("Encodes old photos with VAE_A (VAE_A_quality). With a scratch mask, scratch "
                   "pixels are painted white first, as the reference does.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": (IMAGE, {"tooltip": "The old photos (alpha is ignored)."}),
                "vae": (VAE, {"tooltip": "VAE_A_quality/latest_net_G.pth (the old-photo "
                                         "encoder) from 'Load Old Photo VAE'."}),
                "fit": (("resize", "pad"), {
                    "default": "resize",
                    "tooltip": "Sizes that are not multiples of 4: 'resize' (bilinear, the "
                               "reference's rule) or 'pad' (reflect-pad, cropped again by "
                               "the decoder)."}),
            },
            "optional": {
                "mask": (MASK, {"tooltip": "Scratch mask from 'Detect Scratches' for the "
                                           "scratch/HR mappings; another size is resized."}),
                "precision": precision_input(),
            },
        }

    def encode(self, image, vae, fit="resize", mask=None, precision="exact"):
        node = self.DISPLAY_NAME
        model = expect_model(vae, "vae", node=node, input_name="vae")
        precision = check_precision(precision, node=node)
        if _vae_hint(model.name) == "b":
            log.warning("%s: '%s' looks like a VAE_B (a decoder); old photos are encoded with "
                        "VAE_A_quality", node, model.name)
        if fit not in ("resize", "pad"):
            raise InputError(f"{node}: fit must be 'resize' or 'pad', got {fit!r}")
        images = to_rgb(image_to_nchw(image), node=node)
        b, _, h, w = images.shape
        masks = None if mask is None else fit_mask(mask_to_nchw(mask), b, (h, w), node=node)
        steps = Steps(b)
        per_item = item_bytes("quality", h * w)

        def run(start: int, stop: int, tile: bool) -> OldPhotoLatent:
            m = None if masks is None else masks[start:stop]
            part = encode_old(images[start:stop], model.descriptor, mask=m, fit=fit, tile=tile)
            return part.to(_here())

        with models_on_device(model, memory_required=per_item, precision=precision) as device:
            parts = run_in_chunks(b, run, steps=steps, device=device, per_item=per_item,
                                  node=node)
        return (_payload(OldPhotoLatent.cat(parts)),)


class OldPhotoLatentMap:
    DISPLAY_NAME = "Old Photo Latent Map"
    CATEGORY = CATEGORY
    FUNCTION = "map"
    RETURN_TYPES = (LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The latent translated into the clean-photo space (domain 'clean'), for "
                       "'Decode Clean Photo'.",)
    DESCRIPTION = ("Translates an old-photo latent into the latent space of clean photos (the "
                   "paper's mapping network). The scratch and HR mappings repair the masked "
                   "regions with their (partial) non-local attention and need the mask.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent": (LATENT, {"tooltip": "From 'Encode Old Photo' (domain 'old')."}),
                "mapping": (MAPPING, {"tooltip": "From 'Load Old Photo Mapping': "
                                                 "mapping_quality, mapping_scratch or "
                                                 "mapping_Patch_Attention (HR)."}),
                "mask_dilation": (INT, {
                    "default": 0, "min": 0, "max": 16,
                    "tooltip": "Grow the mask by this many 3x3 steps before mapping. The "
                               "reference's HR mode grows it by 3 before encoding and "
                               "mapping: prefer 'dilation' on 'Detect Scratches' so that "
                               "Encode paints the same holes; use this for masks from "
                               "elsewhere."}),
            },
            "optional": {
                "mask": (MASK, {"tooltip": "The scratch mask given to 'Encode Old Photo'. "
                                           "Required by mapping_scratch and the HR mapping, "
                                           "ignored by mapping_quality. Another size is "
                                           "resized."}),
                "precision": precision_input(),
            },
        }

    def map(self, latent, mapping, mask_dilation=0, mask=None, precision="exact"):
        node = self.DISPLAY_NAME
        model = expect_model(mapping, "mapping", node=node, input_name="mapping")
        precision = check_precision(precision, node=node)
        lat = latent_from_payload(latent, node=node)
        if lat.domain != "old":
            raise InputError(f"{node}: this latent is already in the '{lat.domain}' domain "
                             "(it was mapped before); map only latents from 'Encode Old Photo'")
        desc = model.descriptor
        needs_mask = "mask" in desc.arch.tags
        b = lat.samples.shape[0]
        masks = None
        if needs_mask:
            if mask is None:
                raise InputError(f"{node}: the {desc.arch.title} ('{model.name}') needs the "
                                 "scratch mask: connect the MASK of 'Detect Scratches' (the "
                                 "one given to 'Encode Old Photo'), or use mapping_quality")
            masks = fit_mask(mask_to_nchw(mask), b, lat.image_size, node=node,
                             target="the encoded image")
            if mask_dilation:
                masks = dilate_mask(masks, int(mask_dilation))
        elif mask is not None:
            log.info("%s: the %s takes no mask; the mask is ignored", node, desc.arch.title)
        steps = Steps(b)
        per_item = item_bytes(_MAPPING_MODE.get(desc.arch.id, "scratch"),
                              _pixels(lat.working_size))

        def run(start: int, stop: int, tile: bool) -> torch.Tensor:
            m = None if masks is None else masks[start:stop]
            return map_latent(lat.items(start, stop), desc, mask=m, tile=tile,
                              progress=steps.within).samples.to(_here())

        with models_on_device(model, memory_required=per_item, precision=precision) as device:
            out = run_in_chunks(b, run, steps=steps, device=device, per_item=per_item,
                                node=node)
        clean = replace(lat, samples=torch.cat(out), domain="clean")
        return (_payload(clean, mapping=desc.arch.id),)


class OldPhotoVAEDecodeClean:
    DISPLAY_NAME = "Decode Clean Photo"
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The restored photos (RGB, the encoded size unless restore_size is "
                       "off).",)
    DESCRIPTION = "Decodes a mapped (clean) latent with VAE_B into the restored photo."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": (LATENT, {"tooltip": "From 'Old Photo Latent Map' (domain 'clean')."}),
            "vae": (VAE, {"tooltip": "VAE_B_quality/latest_net_G.pth after mapping_quality, "
                                     "VAE_B_scratch/latest_net_G.pth after mapping_scratch or "
                                     "the HR mapping (from 'Load Old Photo VAE')."}),
            "stretch": ((_AUTO, *TONES), {
                "default": _AUTO,
                "tooltip": "The output's tone. 'auto': what the VAE's model set asks for "
                           "('reference' for the published checkpoints, 'anchor' for the "
                           "bundled set); 'reference': stretch each image to the full 0..1 "
                           "range, as the reference saves its results; 'anchor': the encoded "
                           "photo's brightness, contrast and colour cast, levels stretched "
                           "(the latent carries the photo); 'none': the network's output as "
                           "is."}),
            "restore_size": (BOOLEAN, {
                "default": True,
                "tooltip": "Give back the size that was encoded (undo the multiple-of-4 "
                           "resize or padding); off keeps the working size, as the "
                           "reference."}),
        }, "optional": {"precision": precision_input()}}

    def decode(self, latent, vae, stretch=_AUTO, restore_size=True, precision="exact"):
        node = self.DISPLAY_NAME
        model = expect_model(vae, "vae", node=node, input_name="vae")
        precision = check_precision(precision, node=node)
        lat = latent_from_payload(latent, node=node)
        if lat.domain != "clean":
            raise InputError(f"{node}: this latent is in the '{lat.domain}' domain: map it with "
                             "'Old Photo Latent Map' before decoding")
        if stretch not in (_AUTO, *TONES):
            raise InputError(f"{node}: stretch must be one of {(_AUTO, *TONES)}, got "
                             f"{stretch!r}")
        tone = model.tone if stretch == _AUTO else stretch
        if tone == "anchor" and lat.source is None:
            raise InputError(f"{node}: 'anchor' takes the tone of the encoded photo, and this "
                             "latent carries none (it comes from an older version of 'Encode "
                             "Old Photo' or another node): re-encode it, or choose "
                             "'reference'")
        hint = _vae_hint(model.name)
        mapped = latent.get("mapping")
        if hint == "a":
            log.warning("%s: '%s' looks like VAE_A (the encoder); decode with VAE_B_quality or "
                        "VAE_B_scratch", node, model.name)
        elif hint == "b" and mapped:
            wants = "quality" if mapped == "mapping_quality" else "scratch"
            if wants not in model.name.lower():
                log.warning("%s: a latent from %s is normally decoded with VAE_B_%s, got '%s'",
                            node, mapped, wants, model.name)
        b = lat.samples.shape[0]
        steps = Steps(b)
        per_item = item_bytes("quality", _pixels(lat.working_size))

        def run(start: int, stop: int, tile: bool) -> torch.Tensor:
            return decode_clean(lat.items(start, stop), model.descriptor, tone=tone,
                                restore_size=bool(restore_size), tile=tile).to(_here())

        with models_on_device(model, memory_required=per_item, precision=precision) as device:
            out = run_in_chunks(b, run, steps=steps, device=device, per_item=per_item,
                                node=node)
        return (nchw_to_image(torch.cat(out)),)


RESTORATION_NODES = {cls.__name__: cls for cls in (
    OldPhotoDetectScratches, OldPhotoVAEEncodeOld, OldPhotoLatentMap, OldPhotoVAEDecodeClean)}
