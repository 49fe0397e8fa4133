"""Fixtures of the degradation tests: small synthetic photos and configs that isolate stages."""

from __future__ import annotations

import math

import pytest
import torch

from oldphoto_core.degrade import DegradeConfig


def make_photo(batch: int = 1, channels: int = 3, height: int = 64, width: int = 64,
               seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A smooth, mid-tone synthetic "photo" ``[B, C, H, W]`` in [0.1, 0.7].

    Mid-tones matter: the paper's blend modes only lighten, so damage must be able to show.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic",
                                             align_corners=False)
    y = torch.linspace(0, math.pi, height).view(1, 1, -1, 1)
    photo = 0.4 + 0.2 * (smooth - 0.5) + 0.1 * torch.sin(3 * y)
    return photo.clamp(0.1, 0.7).to(dtype)


@pytest.fixture
def photo():
    """Factory: ``photo(batch=1, channels=3, height=64, width=64, seed=0, dtype=float32)``."""
    return make_photo


@pytest.fixture
def structured_only() -> DegradeConfig:
    """Only the structured damage: no ageing, grain, global blur or unstructured ops."""
    return DegradeConfig(unstructured_ops=(), grain_sigma_255=(0.0, 0.0), global_blur_prob=0.0,
                         vignette_prob=0.0, sepia_prob=0.0, fade_prob=0.0)


@pytest.fixture
def heavy_damage(structured_only: DegradeConfig) -> DegradeConfig:
    """Structured-only, with every kind of damage drawn, opaque and bright."""
    return structured_only.replace(
        scratch_count=(4, 4), crack_count=(2, 2), dust_density=(400.0, 400.0),
        crease_count=(1, 1), hole_count=(1, 1), blend_opacity=(1.0, 1.0),
        scratch_intensity=(1.0, 1.0), scratch_width=(3.0, 3.0), hole_radius=(0.1, 0.1))
