"""Command line: ``oldphoto restore``, ``oldphoto convert``, ``oldphoto info``, ``oldphoto models``.

Errors the user can fix (missing or wrong files) are printed as one clear message and a non-zero
exit code, never as a traceback; so is anything unforeseen, with ``--debug`` to see where it
came from.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import OldPhotoError, OutputError
from ..loading import (
    METADATA_ARCH_KEY,
    canonicalize_state_dict,
    load_model,
    model_from_state_dict,
    read_state_dict,
    save_safetensors,
)
from ..runtime.numerics import PRECISIONS
from .models import add_models_parser

__all__ = ["main", "build_parser"]


def _cmd_convert(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if dst.suffix != ".safetensors":
        raise OldPhotoError(f"{dst}: the output must end in .safetensors")
    if dst.exists() and not args.overwrite:
        raise OldPhotoError(f"{dst} exists; pass --overwrite to replace it")
    raw, _ = read_state_dict(src)
    sd = canonicalize_state_dict(raw, source=str(src))
    desc = model_from_state_dict(sd, source=str(src))  # recognise + strict check before writing
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(sd, dst, arch_id=desc.arch.id, source="/".join(src.parts[-2:]))
    except Exception as exc:  # a folder that cannot be made, a full disk ...
        raise OutputError(f"{dst}: cannot be written: {exc}") from exc
    again = load_model(dst)
    same = all(torch.equal(a, b) for a, b in zip(desc.model.state_dict().values(),
                                                 again.model.state_dict().values(), strict=True))
    if not same:
        raise OldPhotoError(f"{dst}: the converted file does not reproduce {src} exactly")
    print(f"{src} -> {dst}: {desc.arch.title}, {len(sd)} tensors, verified identical")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        try:
            desc = load_model(name)
        except Exception as exc:  # every file gets its line, whatever is wrong with it
            from .restore import describe_failure
            print(f"{name}: ERROR {describe_failure(exc)}")
            if args.debug:
                traceback.print_exc()
            status = 1
            continue
        n = sum(p.numel() for p in desc.model.parameters())
        arch_meta = desc.metadata.get(METADATA_ARCH_KEY)
        extra = f" (metadata: {arch_meta})" if arch_meta else ""
        print(f"{name}: {desc.arch.id} - {desc.arch.title}, {n / 1e6:.1f} M parameters{extra}")
    return status


def _cmd_restore(args: argparse.Namespace) -> int:
    from .restore import run_restore
    return run_restore(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oldphoto", description=__doc__.splitlines()[0])
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true",
                       help="print the full traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("restore", parents=[debug],
                       help="restore photos (files, folders or glob patterns)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the restored PNGs (created if needed)")
    p.add_argument("--scratch", choices=("auto", "on", "off"), default="auto",
                   help="repair scratches: detect and decide (auto), always (on), never (off)")
    p.add_argument("--scratch-threshold", type=_probability, default=None, metavar="P",
                   help="scratch detector threshold, 0 < P < 1: higher marks fewer pixels "
                        "(default: the model set's calibrated threshold, else the "
                        "reference's 0.4)")
    p.add_argument("--hr", action="store_true",
                   help="high-resolution mode: patch-attention mapping, 512 px faces")
    p.add_argument("--faces", choices=("auto", "insightface", "dlib", "off"), default=None,
                   help="face enhancement backend (auto: insightface if its files exist, "
                        "else dlib). Default: auto when the model set has a face model, off "
                        "when it has none (the bundled default set)")
    p.add_argument("--face-size", type=int, choices=(256, 512), default=None,
                   help="face model size (default 256, or 512 with --hr)")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="checkpoint folder (published layout, flat files, or a model set "
                        "with a manifest.json), used strictly; default: $OLDPHOTO_MODELS or "
                        "./models when they hold checkpoints, else the bundled default set")
    p.add_argument("--insightface-root", default=None, metavar="DIR",
                   help="folder with insightface model packs (default MODELS/insightface)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--precision", choices=PRECISIONS, default="exact",
                   help="exact: float32, Winograd for wide 3x3 convolutions on CPU (default); "
                        "direct: float32 with PyTorch's own layers only (bit-for-bit as the "
                        "reference); tf32: TF32 on recent NVIDIA GPUs (faster, slightly "
                        "different results)")
    p.add_argument("--force-rgb", action="store_true",
                   help="write gray scans as RGB (default: gray stays gray)")
    p.add_argument("--overwrite", action="store_true",
                   help="restore again even when the output exists (default: skip, to resume)")
    p.add_argument("--max-megapixels", type=_positive_float, default=None, metavar="MP",
                   help="restore photos larger than MP megapixels at that working size and "
                        "upsample the result to the photo's size (default: full size; a photo "
                        "too large for this machine's memory is refused up front with the "
                        "largest size that fits)")
    g = p.add_argument_group("engine (many photos on many machines)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: a pool of Ray workers, each "
                        "with its own models (pip install \"oldphoto[ray]\")")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join (default: $RAY_ADDRESS, else a local cluster)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray workers (default: half the cluster's CPUs)")
    g.add_argument("--batch-size", type=int, default=1, metavar="B",
                   help="photos per Ray task (default 1: a worker that dies costs one photo; "
                        "more amortise Ray's per-task overhead for small photos)")
    g.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                   help="GPUs per Ray worker (default 0; with G > 0 use --device cuda)")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("convert", parents=[debug],
                       help="write a .safetensors copy of a published checkpoint")
    p.add_argument("input", help="a .pth/.pt checkpoint (or .safetensors)")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("info", parents=[debug],
                       help="recognise checkpoint files and print what they hold")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_cmd_info)
    add_models_parser(sub, debug)
    return parser


def _float_where(accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse ``type``: a float that ``accept`` takes, else a usage error naming what was
    ``expected`` (text that is no number counts as NaN, which no range accepts)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_float = _float_where(lambda v: v > 0, "a positive number")
_probability = _float_where(lambda v: 0 < v < 1, "a number between 0 and 1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 1 some files failed, 2 nothing could
    be done, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    _quiet_opencv()
    try:
        return int(args.func(args))
    except OldPhotoError as exc:
        print(f"oldphoto {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"oldphoto {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a resource problem: one line, traceback on request
        if args.debug:
            traceback.print_exc()
        from .restore import describe_failure
        print(f"oldphoto {args.command}: unexpected error: {describe_failure(exc)}",
              file=sys.stderr)
        return 2


def _quiet_opencv() -> None:
    """OpenCV logs its decoders' complaints to stderr; each failing file gets our own line."""
    try:
        import cv2
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except Exception:  # an OpenCV build without the logging module: its lines stay
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
