"""Wall time and peak RSS of the whole restoration, models loaded once, synthetic weights.

Each case runs in a fresh subprocess (so peak RSS is that case's own) and includes loading the
models from disk, as a user's first image would. Weights are the parity kit's deterministic
synthetic ones written as the published files (real checkpoints compute the same amount of work).

Usage::

    python benchmarks/bench_pipeline.py                       # the issue's cases, CPU, 2 threads
    python benchmarks/bench_pipeline.py --sizes 0.3 1.5 6 --mode quality   # memory vs megapixels
    python benchmarks/bench_pipeline.py --device cuda

Cases: the sample scan ``old_w_scratch/a.png`` (496x624) and synthetic scans of a given number
of megapixels (the sample, upscaled to a 2:3 page, e.g. 6 MP = 2000x3008).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARITY = Path(os.environ.get("OLDPHOTO_PARITY_DIR", REPO.parent / "shared" / "parity"))
SAMPLE = PARITY.parent / "samples" / "old_w_scratch" / "a.png"


def write_synthetic_models(root: Path) -> None:
    """The kit's synthetic weights as the published files (global restoration roles)."""
    import torch
    sys.path.insert(0, str(PARITY))
    from synth import synth_from_manifest_file

    from oldphoto_core.models import ROLES
    by_path = {r.published_path: r for r in ROLES.values()}
    seeds = json.loads((PARITY / "index.json").read_text())["seeds"]
    for name, seed in seeds.items():
        manifest = PARITY / "manifests" / f"{name}.json"
        role = by_path[json.loads(manifest.read_text())["checkpoint"]["path"]]
        if role.arch == "face_spade":
            continue
        dst = root / role.published_path
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        sd = synth_from_manifest_file(manifest, seed)
        torch.save({"model_state": sd} if role.name == "scratch_detector" else sd, dst)


def make_input(megapixels: float | None):
    import torch
    from PIL import Image

    from oldphoto_core.io.images import read_image
    img, _ = read_image(SAMPLE)
    img = img[:, :3]
    if megapixels is None:
        return img
    h = int(round((megapixels * 1e6 * 3 / 2) ** 0.5 / 16) * 16)
    w = int(round(h * 2 / 3 / 16) * 16)
    arr = (img[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    big = Image.fromarray(arr).resize((w, h), Image.BICUBIC)
    import numpy as np
    return torch.from_numpy(np.asarray(big, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def sgemm_gflops(seconds: float = 1.0) -> float:
    """This CPU's float32 matrix-product speed right now (shared machines vary by +-30%)."""
    import torch
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return round(n * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9, 1)


def run_case(models: str, mode: str, megapixels: float | None, device: str,
             precision: str = "exact") -> dict:
    import torch

    from oldphoto_core.pipeline import Restorer
    image = make_input(megapixels)
    speed = sgemm_gflops() if device == "cpu" else None
    t0 = time.perf_counter()
    restorer = Restorer(models, device=device, precision=precision)
    scratch = {"quality": "off", "scratch": "on", "hr": "on"}[mode]
    result = restorer.restore(image, scratch=scratch, hr=mode == "hr", faces="off")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    out = {"mode": mode, "precision": precision, "size": f"{image.shape[-1]}x{image.shape[-2]}",
           "megapixels": round(image.shape[-1] * image.shape[-2] / 1e6, 2),
           "seconds_incl_model_load": round(wall, 2),
           "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
           "scratch_coverage": round(float(result.masks.mean()), 4)}
    if speed is not None:
        out["cpu_sgemm_gflops_before"] = speed
    if device.startswith("cuda"):
        out["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main() -> None:
    from oldphoto_core.runtime.numerics import PRECISIONS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("quality", "scratch", "hr"), default="scratch")
    ap.add_argument("--sizes", nargs="*", type=float, default=None,
                    help="megapixels of synthetic scans (default: the sample, then 6 MP)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=None, help="models folder (default: a temp folder)")
    ap.add_argument("--precision", choices=PRECISIONS, default="exact")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    if args.one:
        mp = None if args.one[1] == "sample" else float(args.one[1])
        print(json.dumps(run_case(args.models, args.one[0], mp, args.device, args.precision)))
        return
    models = Path(args.models or Path(tempfile.gettempdir()) / "oldphoto-bench-models")
    write_synthetic_models(models)
    sizes = ["sample", "6"] if args.sizes is None else [str(s) for s in args.sizes]
    for size in sizes:
        cmd = [sys.executable, __file__, "--models", str(models), "--device", args.device,
               "--threads", str(args.threads), "--precision", args.precision,
               "--one", args.mode, size]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            print(json.dumps({"mode": args.mode, "size": size, "failed":
                              res.stderr.strip().splitlines()[-1:]}))
        else:
            print(res.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
