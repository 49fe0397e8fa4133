"""Command line: ``python -m training STAGE --data DIR --out DIR [flags]``.

The common flags are one parent parser shared by every stage, so they are spelled, defaulted
and documented identically; each stage adds only its own inputs and loss weights. Parsing
returns a :class:`~training.config.TrainConfig`; :func:`main` hands it to the loop.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import MAPPING_VARIANTS, PUBLISHED_WIDTH, STAGES, ConfigError, TrainConfig

__all__ = ["build_parser", "parse_config", "main"]

_STAGE_HELP = {
    "vae_clean": "VAE_2 on clean photos (KL + alpha*L1 + LSGAN, eq. 1-2)",
    "vae_old": "VAE_1 on real old photos (--old) and photos damaged on the fly, with the "
               "latent adversarial alignment of eq. 3-4",
    "mapping": "latent mapping between the frozen VAEs (eq. 5-6); --variant quality, "
               "scratch (partial non-local block) or hr (patch attention)",
    "detector": "scratch detection U-Net on synthetic (and --pairs real) masks (eq. 11-15)",
    "face": "SPADE face generator on aligned faces (perceptual + LSGAN, eq. 17-18)",
}


def _common(stage_defaults: argparse.ArgumentParser) -> None:
    g = stage_defaults.add_argument_group("common flags (identical for every stage)")
    g.add_argument("--data", type=Path, required=True,
                   help="folder tree of photos (JPEG/PNG/TIFF/WebP); unreadable files are "
                        "reported once and skipped")
    g.add_argument("--out", type=Path, required=True,
                   help="output folder: the generator (.safetensors), resume.state, "
                        "metrics.jsonl, samples/, config.json, train.log")
    g.add_argument("--steps", type=int, default=100_000,
                   help="optimisation steps in all (default %(default)s); the learning rate "
                        "is constant for the first half and decays linearly to 0 over the "
                        "second half")
    g.add_argument("--batch", type=int, default=8,
                   help="images per step and per process (default %(default)s)")
    g.add_argument("--crop", type=int, default=None,
                   help="side of the random square crop in pixels (default 256 as the paper; "
                        "face: the side faces are trained at, default --face-size)")
    g.add_argument("--width", type=int, default=None,
                   help="channel width of the trained network (default: the published one, "
                        "see the stage's description); smaller widths make small models")
    g.add_argument("--lr", type=float, default=2e-4,
                   help="Adam learning rate, betas (0.5, 0.999) (default %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of initialisation, data order, crops and damage "
                        "(default %(default)s)")
    g.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (cuda when available; default %(default)s); "
                        "under torchrun each process takes cuda:LOCAL_RANK")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="STATE",
                   help="continue exactly where a run stopped: networks, discriminators, "
                        "optimisers, schedules, step, every RNG and the data order; STATE "
                        "defaults to OUT/resume.state")
    g.add_argument("--init", type=Path, default=None, metavar="FILE",
                   help="fine-tune: start the trained network from these weights (a published "
                        "checkpoint or an earlier output, recognised by its keys; its width "
                        "must equal --width); discriminators start fresh")
    g.add_argument("--log-every", type=int, default=50,
                   help="append the mean losses to OUT/metrics.jsonl every N steps "
                        "(default %(default)s)")
    g.add_argument("--sample-every", type=int, default=1000,
                   help="write a sample grid (input | output | target) to OUT/samples/ every "
                        "N steps; 0 = off (default %(default)s)")
    g.add_argument("--save-every", type=int, default=1000,
                   help="write OUT/resume.state and the generator every N steps (and at the "
                        "end); 0 = only at the end (default %(default)s)")
    g.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N steps of this run (state saved), e.g. to fit a job's "
                        "time limit; continue later with --resume")
    g.add_argument("--workers", type=int, default=2,
                   help="data loading worker processes per training process "
                        "(default %(default)s; 0 loads in the training process)")
    g.add_argument("--small", choices=("upscale", "skip"), default="upscale",
                   help="photos smaller than the crop: upscale them (bicubic) or skip them "
                        "(default %(default)s)")
    g.add_argument("--color-augment", action="store_true",
                   help="permute each crop's colour channels at random, so that a few photos "
                        "show six times as many colours (grey photos are unchanged)")
    g.add_argument("--damage-scale", choices=("photo", "crop"), default="photo",
                   help="pixel scale of the synthetic scratches, dust and cracks: 'photo' damages "
                        "each crop as a part of its whole photo (as restoration meets them); "
                        "'crop' as a photo the size of the crop (thinner, fainter defects: "
                        "what runs before this option trained on) (default %(default)s)")
    g.add_argument("--max-side", type=int, default=0,
                   help="downscale photos whose long side exceeds this before cropping; "
                        "0 = crop at the photo's own resolution, as the reference "
                        "(default %(default)s)")


def _add_vgg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vgg19", type=Path, default=None, metavar="FILE",
                   help="torchvision-format VGG19 weights (.pth or .safetensors, recognised by "
                        "their keys, loaded safely) for the perceptual term; without it the "
                        "term is off. Nothing is ever downloaded.")
    p.add_argument("--vgg-weight", type=float, default=10.0,
                   help="weight of the VGG perceptual term (lambda2, default %(default)s)")


def _add_gan(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gan-weight", type=float, default=1.0,
                   help="weight of the image LSGAN term (default %(default)s); 0 turns the "
                        "image discriminator off, feature matching with it: a fidelity-only "
                        "objective that trains several times faster (the bundled models' "
                        "recipe)")
    p.add_argument("--fm-weight", type=float, default=10.0,
                   help="weight of discriminator feature matching (lambda2, default "
                        "%(default)s)")


def _add_vae(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kl-weight", type=float, default=1.0,
                   help="weight of the KL term (default %(default)s)")
    p.add_argument("--l1-weight", type=float, default=10.0,
                   help="weight alpha of the L1 reconstruction (default %(default)s)")
    _add_gan(p)
    _add_vgg(p)


def _stage_flags(stage: str, p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"{stage} flags")
    if stage == "vae_clean":
        g.add_argument("--variant", choices=("quality", "scratch"), default="quality",
                       help="which published clean VAE the output stands for (VAE_B_quality "
                            "or VAE_B_scratch; same network, the name picks its role)")
        _add_vae(g)
    elif stage == "vae_old":
        g.add_argument("--old", type=Path, default=None, metavar="DIR",
                       help="real old photos (scans); without them the latent GAN has no real "
                            "side and is off")
        _add_vae(g)
        g.add_argument("--latent-gan-weight", type=float, default=1.0,
                       help="weight of the latent adversarial term (default %(default)s)")
    elif stage == "mapping":
        g.add_argument("--variant", choices=MAPPING_VARIANTS, default="quality",
                       help="quality (no mask), scratch (partial non-local block, masks from "
                            "degrade) or hr (patch attention) (default %(default)s)")
        g.add_argument("--vae-old", type=Path, default=None, metavar="FILE",
                       help="the trained VAE_1 (frozen; output of vae_old)")
        g.add_argument("--vae-clean", type=Path, default=None, metavar="FILE",
                       help="the trained VAE_2 (frozen; output of vae_clean)")
        g.add_argument("--latent-weight", type=float, default=60.0,
                       help="weight lambda1 of the latent L1 (default %(default)s)")
        _add_gan(g)
        _add_vgg(g)
    elif stage == "detector":
        g.add_argument("--pairs", type=Path, default=None, metavar="DIR",
                       help="real labelled pairs: DIR/images/NAME.* with DIR/masks/NAME.* "
                            "(white = scratch)")
        g.add_argument("--pairs-fraction", type=float, default=0.5,
                       help="share of samples taken from --pairs (default %(default)s; 1 = "
                            "real pairs only)")
        g.add_argument("--focal-gamma", type=float, default=0.2,
                       help="focusing parameter gamma of the focal term (default %(default)s)")
        g.add_argument("--focal-weight", type=float, default=10.0,
                       help="weight beta of the focal term (default %(default)s)")
    elif stage == "face":
        g.add_argument("--face-size", type=int, choices=(256, 512), default=256,
                       help="alignment template size = the size the model runs at in "
                            "restoration (default %(default)s)")
        g.add_argument("--aligned", action="store_true",
                       help="--data holds faces already aligned to the template (no detection)")
        g.add_argument("--face-detector", choices=("auto", "dlib", "insightface"),
                       default="auto", help="detector of faces in --data photos "
                                            "(default %(default)s)")
        g.add_argument("--insightface-root", type=Path, default=None, metavar="DIR",
                       help="insightface models folder (SCRFD det_10g.onnx)")
        g.add_argument("--face-max-downscale", type=float, default=4.0,
                       help="faces are shrunk by a random factor up to this before the damage "
                            "(default %(default)s; 1 = off)")
        _add_gan(g)
        _add_vgg(g)


def _add_recipe(sub) -> None:
    from .recipes import RECIPES
    p = sub.add_parser(
        "recipe", help="train a whole model set (all its stages in order), resumably",
        description="Train every network of a model set in order, on the photos it names. "
                    "Run the same command again after an interruption: finished steps are "
                    "skipped and the interrupted one continues from its last saved state. "
                    "Writes OUT/models/ (the set, its manifest and data card).")
    p.add_argument("name", choices=sorted(RECIPES), help="the recipe ('default': the models "
                   "bundled with oldphoto_core)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--device", default="cpu",
                   help="cpu (default; deterministic), cuda or auto")
    p.add_argument("--workers", type=int, default=1,
                   help="data loading worker processes (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one sub-command per stage, each with the common flags, and
    ``recipe``."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the networks of 'Old Photo Restoration via Deep Latent Space "
                    "Translation' from a folder of photos. Run from the repository root; "
                    "under torchrun the same command trains data-parallel.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage in STAGES:
        p = sub.add_parser(
            stage, help=_STAGE_HELP[stage],
            description=f"{_STAGE_HELP[stage]}. Published width: {PUBLISHED_WIDTH[stage]}.")
        _common(p)
        _stage_flags(stage, p)
    _add_recipe(sub)
    return parser


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse ``argv`` into a resolved :class:`TrainConfig` (argparse exits on errors)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.stage == "recipe":
        parser.error("'recipe' is not a stage; run it through main()")
    values = {k: v for k, v in vars(ns).items() if v is not None or k in ("crop", "width")}
    try:
        return TrainConfig(**values).resolved()
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m training``; returns the exit status."""
    from .errors import TrainingError
    from .loop import train
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["recipe"]:
            from .recipes import RECIPES, run_recipe
            ns = build_parser().parse_args(args)
            models = run_recipe(RECIPES[ns.name], ns.out, device=ns.device, workers=ns.workers)
            if models is not None:
                print(f"model set written to {models}")
        else:
            train(parse_config(args))
    except TrainingError as exc:
        print(f"training: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("training: interrupted; run the same command with --resume (a recipe: the same "
              "command) to continue from the last saved state", file=sys.stderr)
        return 130
    return 0
