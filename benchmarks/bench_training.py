"""Training speed of every stage: optimisation steps per second at 256 px crops.

For each stage (``vae_clean``, ``vae_old`` with real old photos, ``mapping`` quality / scratch
/ hr, ``detector``, ``face``) at the published width and at a small width, the stage is built
exactly as ``python -m training`` builds it (same classes, losses, discriminators, optimisers),
a batch is made once by the stage's own dataset, and ``train_step`` is timed on it after a
warm-up step. Data loading is not in the figure: it runs in worker processes in parallel with
the step; its own rate (items per second in one process, damage included) is reported in a
separate column so one can see how many workers keep a device busy.

The photos are scikit-image's bundled images at ~320 px; the frozen VAEs of the mapping are
random (speed does not depend on the values).

Usage::

    python benchmarks/bench_training.py                       # CPU, 2 threads, all stages
    python benchmarks/bench_training.py --device cuda --batch 4
    python benchmarks/bench_training.py --only detector face --widths small
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from oldphoto_core.arch import OldPhotoVAE  # noqa: E402
from oldphoto_core.loading import save_safetensors  # noqa: E402
from training.config import PUBLISHED_WIDTH, TrainConfig  # noqa: E402
from training.distributed import Context  # noqa: E402
from training.records import RunLog  # noqa: E402
from training.stages import build_stage  # noqa: E402

#: case name -> (stage, extra config, VAE width the case needs (mapping), small width)
CASES = {
    "vae_clean": ("vae_clean", {}, None, 16),
    "vae_old": ("vae_old", {"old": True}, None, 16),
    "mapping_quality": ("mapping", {"variant": "quality"}, 64, 64),
    "mapping_scratch": ("mapping", {"variant": "scratch"}, 64, 64),
    "mapping_hr": ("mapping", {"variant": "hr"}, 64, 64),
    "detector": ("detector", {}, None, 16),
    "face": ("face", {"aligned": True}, None, 16),
}
#: small-width mappings run between VAEs of this width
SMALL_VAE = 16


def _photos(folder: Path, crop: int) -> Path:
    from skimage import data
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate((data.astronaut(), data.chelsea(), data.coffee(), data.rocket())):
        im = Image.fromarray(img)
        scale = max(crop + 64, 320) / min(im.size)
        im.resize((round(im.width * scale), round(im.height * scale))).save(folder / f"{i}.png")
    return folder


def _vae(path: Path, width: int) -> Path:
    torch.manual_seed(0)
    save_safetensors(OldPhotoVAE(channels=width).state_dict(), path, arch_id="vae")
    return path


def _config(case: str, width_kind: str, root: Path, crop: int, batch: int,
            device: str) -> TrainConfig:
    stage, extra, vae_width, small = CASES[case]
    width = PUBLISHED_WIDTH[stage] if width_kind == "published" else small
    photos = root / "photos"
    kw: dict = {"stage": stage, "data": photos, "out": root / "out" / case, "crop": crop,
                "width": width, "batch": batch, "device": device, "workers": 0}
    if extra.get("old"):
        kw["old"] = photos
    if extra.get("aligned"):
        kw["aligned"] = True
        kw["data"] = root / "faces"
    if "variant" in extra:
        kw["variant"] = extra["variant"]
    if stage == "mapping":
        vw = vae_width if width_kind == "published" else SMALL_VAE
        kw["vae_old"] = _vae(root / f"vae_{vw}_a.safetensors", vw)
        kw["vae_clean"] = _vae(root / f"vae_{vw}_b.safetensors", vw)
    return TrainConfig(**kw).resolved()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(cfg: TrainConfig, steps: int) -> dict:
    device = torch.device("cuda" if cfg.device == "cuda" else "cpu")
    ctx = Context(device=device)
    torch.manual_seed(cfg.seed)
    stage = build_stage(cfg, ctx, RunLog(None, enabled=False))
    t0 = time.perf_counter()
    items = [stage.dataset[k] for k in range(cfg.batch)]
    data_rate = cfg.batch / (time.perf_counter() - t0)
    batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
    stage.train_mode(True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stage.train_step(batch, 0)                         # warm-up (allocations, kernels)
    _sync(device)
    t0 = time.perf_counter()
    for s in range(steps):
        stage.train_step(batch, s + 1)
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    params = sum(p.numel() for p in stage.export().module.parameters())
    out = {"steps_per_s": 1 / dt, "sec_per_step": dt, "data_items_per_s": data_rate,
           "params_M": params / 1e6}
    if device.type == "cuda":
        out["peak_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
    p.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--widths", nargs="*", default=["small", "published"],
                   choices=["small", "published"])
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    print(f"device {args.device}, {args.threads} CPU threads, crop {args.crop}, batch "
          f"{args.batch}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':16} {'width':>9} {'params':>8} {'steps/s':>9} {'s/step':>8} "
          f"{'data it/s':>9} {'peak GiB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _photos(root / "photos", args.crop)
        faces = root / "faces"
        faces.mkdir()
        from skimage import data
        Image.fromarray(np.ascontiguousarray(data.astronaut()[0:256, 130:386])).save(
            faces / "a.png")
        for case in args.only:
            for kind in args.widths:
                cfg = _config(case, kind, root, args.crop, args.batch, args.device)
                r = bench(cfg, args.steps)
                r.update(case=case, width=cfg.width, kind=kind)
                results.append(r)
                peak = f"{r['peak_GiB']:8.2f}" if "peak_GiB" in r else f"{'-':>8}"
                print(f"{case:16} {kind[:5]} {cfg.width:3d} {r['params_M']:7.2f}M "
                      f"{r['steps_per_s']:9.3f} {r['sec_per_step']:8.3f} "
                      f"{r['data_items_per_s']:9.2f} {peak}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
