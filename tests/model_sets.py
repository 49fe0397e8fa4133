"""A tiny model set in the bundled layout (``manifest.json`` + safetensors), for tests of model
resolution, the ``oldphoto models`` command, loaders and benchmarks.

The networks are the engine's architectures at a few channels, randomly initialised with a
fixed seed: they load strictly and run end to end in milliseconds, and their outputs mean
nothing. Imported by path from ``tests/conftest.py`` (see ``tiny_bundled_set``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from oldphoto_core.arch import OldPhotoVAE, QualityMapping, ScratchMapping, ScratchUNet
from oldphoto_core.loading import save_safetensors

__all__ = ["write_tiny_set", "TINY_ROLES"]

#: file -> (network factory, registry id, the roles it serves)
_FILES = {
    "VAE_A.safetensors": (lambda: OldPhotoVAE(channels=8), "vae", ("vae_a",)),
    "VAE_B.safetensors": (lambda: OldPhotoVAE(channels=8), "vae",
                          ("vae_b_quality", "vae_b_scratch")),
    "mapping_quality.safetensors": (lambda: QualityMapping(latent_channels=8, width=16),
                                    "mapping_quality", ("mapping_quality",)),
    "mapping_scratch.safetensors": (lambda: ScratchMapping(latent_channels=8, width=16),
                                    "mapping_scratch", ("mapping_scratch",)),
    "scratch_detector.safetensors": (lambda: ScratchUNet(base=8), "scratch_unet",
                                     ("scratch_detector",)),
}
TINY_ROLES = tuple(r for _, _, roles in _FILES.values() for r in roles)


def write_tiny_set(folder: Path, seed: int = 0, tone: str = "anchor") -> dict[str, Path]:
    """Write the set into ``folder`` (created); returns ``role -> file``. Its manifest asks
    for ``tone`` (the bundled set's ``"anchor"`` by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    roles: dict[str, str] = {}
    for name, (make, arch_id, served) in _FILES.items():
        save_safetensors(make().state_dict(), folder / name, arch_id=arch_id,
                         metadata={"oldphoto.role": served[0]})
        roles.update({r: name for r in served})
    (folder / "manifest.json").write_text(json.dumps({"set": "tiny", "roles": roles,
                                                                "tone": tone}))
    return {r: folder / n for r, n in roles.items()}
