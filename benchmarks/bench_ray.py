"""``--engine ray`` throughput and driver memory.

Two measurements, each in a fresh process (so a peak RSS belongs to one run):

* images per second for 1 and 2 workers restoring ``--photos`` small photos (quality mode);
* the driver's peak RSS as the number of inputs grows (``--sizes``, tiny photos): it should stay
  flat, since the driver only lists paths and writes manifest rows as they stream back.

The model set is a tiny random one in the bundled layout (speed depends on the networks'
widths: pass ``--models`` for a real set). Usage::

    python benchmarks/bench_ray.py                      # 100 photos, workers 1 and 2
    python benchmarks/bench_ray.py --sizes 100 1000 10000 --side 16
    python benchmarks/bench_ray.py --models models/ --photos 200 --side 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _photos(folder: Path, n: int, side: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:06d}.png")
    return folder


def _tiny_models(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    import model_sets
    model_sets.write_tiny_set(folder)
    return folder


def run_once(photos: Path, out: Path, models: Path, workers: int) -> dict:
    """One ``oldphoto restore --engine ray`` run in this process; wall time and peak RSS."""
    import ray

    from oldphoto_core.cli.commands import main
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    t0 = time.perf_counter()
    code = main(["restore", str(photos), "-o", str(out), "--models", str(models),
                 "--scratch", "off", "--device", "cpu", "--engine", "ray",
                 "--workers", str(workers)])
    seconds = time.perf_counter() - t0
    ray.shutdown()
    n = len(list(photos.glob("*.png")))
    return {"code": code, "photos": n, "workers": workers, "seconds": seconds,
            "photos_per_s": n / seconds,
            "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(photos: Path, out: Path, models: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(photos), str(out), str(models), str(workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        raise SystemExit(f"child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        photos, out, models, workers = sys.argv[2:6]
        print(json.dumps(run_once(Path(photos), Path(out), Path(models), int(workers))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=100)
    p.add_argument("--side", type=int, default=64, help="photo side in pixels (default 64)")
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--sizes", type=int, nargs="*", default=[],
                   help="input counts for the driver-memory series (e.g. 100 1000 10000)")
    p.add_argument("--models", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = args.models or _tiny_models(root / "models")
        photos = _photos(root / "photos", args.photos, args.side)
        print(f"{'workers':>7} {'photos':>7} {'seconds':>8} {'photos/s':>9} {'driver MiB':>10}")
        for w in args.workers:
            r = _child(photos, root / f"out_w{w}", models, w)
            print(f"{w:7d} {r['photos']:7d} {r['seconds']:8.1f} {r['photos_per_s']:9.2f} "
                  f"{r['driver_peak_rss_mib']:10.0f}", flush=True)
        for n in args.sizes:
            small = _photos(root / f"tiny_{n}", n, 16)
            r = _child(small, root / f"out_n{n}", models, max(args.workers))
            print(f"{max(args.workers):7d} {n:7d} {r['seconds']:8.1f} {r['photos_per_s']:9.2f} "
                  f"{r['driver_peak_rss_mib']:10.0f}", flush=True)


if __name__ == "__main__":
    main()
