"""The resolved configuration of a run: one frozen, typed record, written beside the outputs.

Every stage reads the same record; fields a stage does not use keep their defaults (and the
stage's ``--help`` does not offer them). Defaults are the paper's values (Wan et al., TPAMI,
§3-4): Adam(2e-4, β=(0.5, 0.999)), 256 px crops, α=10, λ1=60, λ2=10, γ=0.2, β=10.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "STAGES", "PUBLISHED_WIDTH", "MAPPING_VARIANTS", "ConfigError"]

#: The stages, in the order a full reproduction trains them.
STAGES = ("vae_clean", "vae_old", "mapping", "detector", "face")
#: ``--width`` default per stage: the published networks' main width (VAE channels, mapping
#: width, U-Net base, SPADE ``ngf``).
PUBLISHED_WIDTH = {"vae_clean": 64, "vae_old": 64, "mapping": 512, "detector": 64, "face": 64}
MAPPING_VARIANTS = ("quality", "scratch", "hr")


class ConfigError(ValueError):
    """A flag value or combination that cannot train (raised before any work starts)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; see ``python -m training STAGE --help`` for each flag.

    ``crop`` and ``width`` are resolved (never None) once :meth:`resolved` has run.
    """

    stage: str
    data: Path
    out: Path
    steps: int = 100_000
    batch: int = 8
    crop: int | None = None
    width: int | None = None
    lr: float = 2e-4
    seed: int = 0
    device: str = "auto"
    resume: str | None = None
    init: Path | None = None
    log_every: int = 50
    sample_every: int = 1000
    save_every: int = 1000
    stop_after: int | None = None
    workers: int = 2
    small: str = "upscale"
    max_side: int = 0
    color_augment: bool = False
    damage_scale: str = "photo"
    # stage options
    variant: str | None = None
    old: Path | None = None
    vae_old: Path | None = None
    vae_clean: Path | None = None
    pairs: Path | None = None
    pairs_fraction: float = 0.5
    face_size: int = 256
    aligned: bool = False
    face_detector: str = "auto"
    insightface_root: Path | None = None
    face_max_downscale: float = 4.0
    vgg19: Path | None = None
    # loss weights (paper defaults)
    kl_weight: float = 1.0
    l1_weight: float = 10.0
    gan_weight: float = 1.0
    fm_weight: float = 10.0
    vgg_weight: float = 10.0
    latent_weight: float = 60.0
    latent_gan_weight: float = 1.0
    focal_gamma: float = 0.2
    focal_weight: float = 10.0

    def resolved(self) -> TrainConfig:
        """Fill ``crop``/``width``/``variant`` defaults and check every value.

        Raises:
            ConfigError: a value out of range or a missing stage input, with the flag's name.
        """
        if self.stage not in STAGES:
            raise ConfigError(f"unknown stage {self.stage!r}; expected one of {STAGES}")
        crop = self.crop if self.crop is not None else (
            self.face_size if self.stage == "face" else 256)
        width = self.width if self.width is not None else PUBLISHED_WIDTH[self.stage]
        variant = self.variant
        if variant is None and self.stage in ("mapping", "vae_clean"):
            variant = "quality"
        cfg = dataclasses.replace(self, crop=crop, width=width, variant=variant)
        cfg._check()
        return cfg

    def _check(self) -> None:
        positive = {"--steps": self.steps, "--batch": self.batch, "--width": self.width,
                    "--log-every": self.log_every}
        for flag, v in positive.items():
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{flag} must be an integer >= 1, got {v!r}")
        for flag, v in {"--sample-every": self.sample_every, "--save-every": self.save_every,
                        "--workers": self.workers, "--max-side": self.max_side}.items():
            if v < 0:
                raise ConfigError(f"{flag} must be >= 0 (0 turns it off), got {v}")
        if self.stop_after is not None and self.stop_after < 1:
            raise ConfigError(f"--stop-after must be >= 1, got {self.stop_after}")
        if self.gan_weight < 0 or self.fm_weight < 0:
            raise ConfigError("--gan-weight and --fm-weight must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        multiple = {"detector": 16, "face": 32}.get(self.stage, 4)
        if self.stage == "mapping" and self.variant == "hr":
            multiple = 32  # the coarsest patch attention cuts the h/4 latent into 8x8 patches
        assert self.crop is not None
        if self.crop < 32 or self.crop % multiple:
            raise ConfigError(f"--crop must be a multiple of {multiple} and >= 32 for stage "
                              f"{self.stage}, got {self.crop}")
        if self.small not in ("upscale", "skip"):
            raise ConfigError(f"--small must be 'upscale' or 'skip', got {self.small!r}")
        if self.damage_scale not in ("photo", "crop"):
            raise ConfigError(f"--damage-scale must be 'photo' or 'crop', got "
                              f"{self.damage_scale!r}")
        if self.max_side and self.max_side < self.crop:
            raise ConfigError(f"--max-side ({self.max_side}) must be 0 or >= --crop "
                              f"({self.crop})")
        if not 0.0 <= self.pairs_fraction <= 1.0:
            raise ConfigError(f"--pairs-fraction must be in [0, 1], got {self.pairs_fraction}")
        if self.face_max_downscale < 1.0:
            raise ConfigError(f"--face-max-downscale must be >= 1, got "
                              f"{self.face_max_downscale}")
        if self.stage == "mapping":
            if self.variant not in MAPPING_VARIANTS:
                raise ConfigError(f"--variant must be one of {MAPPING_VARIANTS}, got "
                                  f"{self.variant!r}")
            missing = [f for f, v in (("--vae-old", self.vae_old),
                                      ("--vae-clean", self.vae_clean)) if v is None]
            if missing:
                raise ConfigError(f"mapping needs the two trained VAEs: {' and '.join(missing)} "
                                  "missing (train them with the vae_old and vae_clean stages)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings); also what the resume state stores."""
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v)
                for f in dataclasses.fields(self)}

    def write(self, path: Path) -> None:
        """Write :meth:`to_dict` as indented JSON (the run's record of its flags)."""
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
