"""Peak working memory of one restoration per mode, fitted as bytes per pixel.

This is where the constants of :mod:`oldphoto_core.runtime.memory` come from. Each case runs
in a fresh subprocess: it loads the models, then resets the kernel's peak-RSS counter (``/proc/self/
clear_refs``, Linux) so that the peak measured is the restoration's own working memory, not the
transient of reading the checkpoints. A least-squares line ``bytes = a + b * pixels`` per mode and
tiling choice is printed at the end, with the worst relative residual, so the model's error is
visible next to the model.

Usage::

    python benchmarks/bench_memory.py                         # all modes, default sizes, CPU
    python benchmarks/bench_memory.py --mode quality --sizes 0.5 1 2 4

Weights are the parity kit's synthetic ones (same shapes, hence the same memory, as the
published checkpoints).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import make_input, write_synthetic_models  # noqa: E402

DEFAULT_SIZES = {"quality": [0.25, 0.5, 1.0, 2.0, 4.0],
                 "scratch": [0.06, 0.12, 0.25, 0.4],
                 "hr": [0.25, 0.5, 1.0, 2.0]}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(models: str, mode: str, megapixels: float, tile: str) -> dict:
    from oldphoto_core.models import required_roles
    from oldphoto_core.pipeline import Restorer
    image = make_input(megapixels)
    restorer = Restorer(models, device="cpu", tile=tile)
    for role in required_roles({"quality": "quality", "scratch": "scratch", "hr": "hr"}[mode]):
        restorer.store.get(role)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    restorer.restore(image, scratch="off" if mode == "quality" else "on", hr=mode == "hr")
    peak = _status_kib("VmHWM")
    h, w = image.shape[-2:]
    return {"mode": mode, "tile": tile, "size": f"{w}x{h}", "pixels": h * w,
            "working_bytes": (peak - before) * 1024}


def fit(rows: list[dict]) -> dict:
    """Least squares ``bytes = a + b * pixels`` and the worst relative residual."""
    n = len(rows)
    xs = [r["pixels"] for r in rows]
    ys = [r["working_bytes"] for r in rows]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    worst = max(abs(a + b * x - y) / y for x, y in zip(xs, ys, strict=True))
    return {"bytes_per_pixel": round(b, 1), "constant_mib": round(a / 2**20, 1),
            "worst_relative_residual": round(worst, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("quality", "scratch", "hr", "all"), default="all")
    ap.add_argument("--tile", choices=("on", "off", "both"), default="both")
    ap.add_argument("--sizes", nargs="*", type=float, default=None, help="megapixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=None, help="models folder (default: a temp folder)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_case(args.models, args.one[0], float(args.one[1]), args.one[2])))
        return
    models = Path(args.models or Path(tempfile.gettempdir()) / "oldphoto-bench-models")
    write_synthetic_models(models)
    modes = ["quality", "scratch", "hr"] if args.mode == "all" else [args.mode]
    tiles = ["off", "on"] if args.tile == "both" else [args.tile]
    fits = {}
    for mode in modes:
        for tile in tiles:
            rows = []
            for mp in args.sizes or DEFAULT_SIZES[mode]:
                cmd = [sys.executable, __file__, "--models", str(models), "--threads",
                       str(args.threads), "--one", mode, str(mp), tile]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    print(json.dumps({"mode": mode, "tile": tile, "megapixels": mp,
                                      "failed": res.stderr.strip().splitlines()[-1:]}))
                    continue
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
            if len(rows) >= 2:
                fits[f"{mode}/tile={tile}"] = fit(rows)
                print(json.dumps({f"{mode}/tile={tile}": fits[f"{mode}/tile={tile}"]}),
                      flush=True)
    print(json.dumps(fits, indent=1))


if __name__ == "__main__":
    main()
