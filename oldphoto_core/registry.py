"""Recognise which network a state dict belongs to, from its keys and shapes only.

Like spandrel's registry: each :class:`ArchSpec` has a cheap ``detect`` predicate (no false
negatives for the published files, rare false positives) and a ``build`` that reads every
hyperparameter from tensor shapes. Specs are tried in order; look-alikes (the three mapping
networks share ``before_NL``/``after_NL``) are ordered so the most specific comes first. File
names are never consulted: users rename files, and the two face models share their keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .arch import (
    OldPhotoVAE,
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
    ScratchUNet,
    SPADEFaceGenerator,
)

__all__ = ["ArchSpec", "ARCHITECTURES", "KINDS", "detect_architecture", "get_architecture",
           "expected_shapes"]

StateDict = Mapping[str, torch.Tensor]

#: Model kinds, one per ComfyUI model type.
KINDS = ("vae", "mapping", "scratch_detector", "face_enhancer")


def _shape(sd: StateDict, key: str) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def _has(sd: StateDict, *keys: str) -> bool:
    return all(k in sd for k in keys)


def _count_indices(sd: StateDict, prefix: str, suffix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}(\d+){re.escape(suffix)}$")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


@dataclass(frozen=True)
class ArchSpec:
    """One recognisable network.

    Attributes:
        id: stable identifier, stored in converted files' metadata.
        kind: one of :data:`KINDS`.
        title: human name used in messages.
        published_as: the published file(s) holding this network.
        detect: ``state_dict -> bool``.
        build: ``state_dict -> nn.Module`` (hyperparameters from shapes; weights not loaded).
        default_build: builds the published configuration (for key listings in messages).
        tiling: ``"supported"`` when the network is convolutional and tiles seamlessly with
            enough overlap, ``"discouraged"`` when it has global attention.
        multiple_of: spatial size requirement of the network's input.
        tags: free-form facts (e.g. ``"mask"`` when the forward takes a mask).
    """

    id: str
    kind: str
    title: str
    published_as: str
    detect: Callable[[StateDict], bool]
    build: Callable[[StateDict], nn.Module]
    default_build: Callable[[], nn.Module]
    tiling: str = "supported"
    multiple_of: int = 1
    tags: tuple[str, ...] = field(default_factory=tuple)


def _detect_vae(sd: StateDict) -> bool:
    return (_has(sd, "encoder.1.weight", "decoder.11.weight")
            and len(_shape(sd, "encoder.1.weight")) == 4
            and _shape(sd, "encoder.1.weight")[-1] == 7)


def _build_vae(sd: StateDict) -> nn.Module:
    c, img = _shape(sd, "encoder.1.weight")[:2]
    return OldPhotoVAE(channels=c, image_channels=img)


def _mapping_dims(sd: StateDict, stem: str) -> tuple[int, int]:
    latent = _shape(sd, f"{stem}.0.weight")[1]
    width = _shape(sd, f"{stem}.9.weight")[0]
    return latent, width


def _detect_quality(sd: StateDict) -> bool:
    return _has(sd, "model.0.weight", "model.9.weight") and bool(
        _count_indices(sd, "model.", ".conv_block.1.weight"))


def _build_quality(sd: StateDict) -> nn.Module:
    latent, width = _mapping_dims(sd, "model")
    n_blocks = len(_count_indices(sd, "model.", ".conv_block.1.weight"))
    return QualityMapping(latent_channels=latent, width=width, n_blocks=n_blocks)


def _detect_scratch_mapping(sd: StateDict) -> bool:
    return _has(sd, "before_NL.0.weight", "NL.theta.weight", "NL.phi.weight", "NL.g.weight")


def _build_scratch_mapping(sd: StateDict) -> nn.Module:
    latent, width = _mapping_dims(sd, "before_NL")
    n_blocks = len(_count_indices(sd, "after_NL.", ".conv_block.1.weight"))
    return ScratchMapping(latent_channels=latent, width=width, n_blocks=n_blocks)


def _detect_patch_attention(sd: StateDict) -> bool:
    return _has(sd, "before_NL.0.weight", "NL_scale_1.F_Combine.weight",
                "NL_scale_3.F_Combine.weight")


def _build_patch_attention(sd: StateDict) -> nn.Module:
    latent, width = _mapping_dims(sd, "before_NL")
    return PatchAttentionMapping(latent_channels=latent, width=width)


def _detect_unet(sd: StateDict) -> bool:
    return _has(sd, "first.1.weight", "down_sample.0.4.filt", "last.1.weight")


def _build_unet(sd: StateDict) -> nn.Module:
    base, in_ch = _shape(sd, "first.1.weight")[:2]
    depth = len(_count_indices(sd, "down_path.", ".block.1.weight"))
    out_ch = _shape(sd, "last.1.weight")[0]
    return ScratchUNet(in_channels=in_ch, out_channels=out_ch, depth=depth, base=base)


def _detect_spade(sd: StateDict) -> bool:
    return _has(sd, "fc.weight", "head_0.conv_0.weight_orig", "up_3.conv_1.weight_orig",
                "conv_img.weight")


def _build_spade(sd: StateDict) -> nn.Module:
    return SPADEFaceGenerator(base=_shape(sd, "conv_img.weight")[1])


#: Detection order matters: the more specific mapping variants come before the plainer ones.
ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec("vae", "vae", "VAE (encoder + decoder)",
             "VAE_A_quality, VAE_B_quality or VAE_B_scratch / latest_net_G.pth",
             _detect_vae, _build_vae, OldPhotoVAE, multiple_of=4),
    ArchSpec("mapping_patch_attention", "mapping", "HR mapping with multi-scale patch attention",
             "mapping_Patch_Attention/latest_net_mapping_net.pth",
             _detect_patch_attention, _build_patch_attention, PatchAttentionMapping,
             tiling="discouraged", tags=("mask",)),
    ArchSpec("mapping_scratch", "mapping", "mapping with partial non-local block",
             "mapping_scratch/latest_net_mapping_net.pth",
             _detect_scratch_mapping, _build_scratch_mapping, ScratchMapping,
             tiling="discouraged", tags=("mask",)),
    ArchSpec("mapping_quality", "mapping", "mapping without mask",
             "mapping_quality/latest_net_mapping_net.pth",
             _detect_quality, _build_quality, QualityMapping),
    ArchSpec("scratch_unet", "scratch_detector", "scratch detection U-Net",
             "detection/FT_Epoch_latest.pt", _detect_unet, _build_unet, ScratchUNet,
             multiple_of=16),
    ArchSpec("face_spade", "face_enhancer", "SPADE face generator",
             "Setting_9_epoch_100 or FaceSR_512 / latest_net_G.pth",
             _detect_spade, _build_spade, SPADEFaceGenerator, multiple_of=32),
)


def get_architecture(arch_id: str) -> ArchSpec:
    """The spec with this id (raises ``KeyError`` listing the known ids)."""
    for spec in ARCHITECTURES:
        if spec.id == arch_id:
            return spec
    raise KeyError(f"unknown architecture {arch_id!r}; known: {[a.id for a in ARCHITECTURES]}")


def detect_architecture(sd: StateDict) -> ArchSpec | None:
    """The first spec whose ``detect`` accepts ``sd``, or ``None``."""
    for spec in ARCHITECTURES:
        try:
            if spec.detect(sd):
                return spec
        except (KeyError, IndexError, ValueError):
            continue
    return None


_EXPECTED: dict[str, dict[str, tuple[int, ...]]] = {}


def expected_shapes(spec: ArchSpec) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the published configuration, built on the meta device (no memory)."""
    if spec.id not in _EXPECTED:
        with torch.device("meta"):
            model = spec.default_build()
        _EXPECTED[spec.id] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _EXPECTED[spec.id]
