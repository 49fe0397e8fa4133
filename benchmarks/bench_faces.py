"""Wall time and peak RSS of the face stages: detection + alignment + enhancement + blend.

Cases: 1 face (the parity kit's / samples' ``old_w_scratch/a.png``) and 6 faces (insightface's
bundled ``t1.jpg``, read from the installed package), at face sizes 256 and 512, on CPU with the
dlib detector. Each face model is built once from the parity kit's synthetic weights (random
initialisation when the kit is absent: the speed does not depend on the values), warmed up on one
crop, then every case runs ``--repeat`` times; the best time is reported.

Peak RSS is the process high-water mark (``VmHWM``) reset before each case through
``/proc/self/clear_refs``, so it covers the model (resident) plus that case's work; the table
also shows the resident size before the case and the 1-minute load average after it (other
processes on the machine slow the 2 threads down a lot). Without that file (not Linux) it falls
back to ``ru_maxrss`` (process-wide peak).

Usage::

    python benchmarks/bench_faces.py                    # 2 threads, both sizes
    python benchmarks/bench_faces.py --sizes 256 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from oldphoto_core.arch.spade import SPADEFaceGenerator  # noqa: E402
from oldphoto_core.faces import (  # noqa: E402
    align_faces,
    blend_faces,
    detect_faces,
    enhance_faces,
    make_face_detector,
)
from oldphoto_core.loading import model_from_state_dict  # noqa: E402


def _status_mb(field: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"{field}:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb(resettable: bool) -> float:
    hwm = _status_mb("VmHWM") if resettable else None
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parity_dir() -> Path | None:
    env = os.environ.get("OLDPHOTO_PARITY_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "parity"
    return p if p.is_dir() else None


def build_model(size: int):
    """Synthetic published-shape weights (seed from the kit's network case), else random."""
    kit = parity_dir()
    name = f"face_spade_{size}"
    if kit is not None and (kit / "networks" / f"{name}.json").is_file():
        case = json.loads((kit / "networks" / f"{name}.json").read_text())
        spec = importlib.util.spec_from_file_location("parity_synth", kit / "synth.py")
        synth = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(synth)
        sd = synth.synth_from_manifest_file(kit / "manifests" / f"{name}.json", case["seed"])
        model = model_from_state_dict(sd, source=f"synthetic {name}", expect="face_enhancer")
        del sd
        return model, f"synthetic {name} (seed {case['seed']})"
    torch.manual_seed(0)
    return SPADEFaceGenerator().eval().requires_grad_(False), "random initialisation"


def load_images() -> dict[str, np.ndarray]:
    kit = parity_dir()
    candidates = [REPO.parent / "shared" / "samples" / "old_w_scratch" / "a.png"]
    if kit is not None:
        candidates.append(kit / "pipeline" / "face" / "input_a.png")
    one = next((p for p in candidates if p.is_file()), None)
    spec = importlib.util.find_spec("insightface")
    if one is None or spec is None:
        sys.exit("needs ../shared/samples (or the parity kit) and the insightface package")
    six = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return {"1 face": np.array(Image.open(one).convert("RGB")),
            "6 faces": np.array(Image.open(six).convert("RGB"))}


def run_case(image: np.ndarray, detector, model, size: int, budget: float | None) -> dict:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    t = {"start": time.perf_counter()}
    faces = detect_faces(x, detector)
    t["detect"] = time.perf_counter()
    faces = align_faces(x, faces, face_size=size)
    t["align"] = time.perf_counter()
    faces = enhance_faces(faces, model, memory_budget_mb=budget)
    t["enhance"] = time.perf_counter()
    blend_faces(x, faces)
    t["blend"] = time.perf_counter()
    keys = ["start", "detect", "align", "enhance", "blend"]
    out = {k: t[k] - t[p] for p, k in zip(keys, keys[1:], strict=False)}
    out["total"] = t["blend"] - t["start"]
    out["faces"] = sum(len(f) for f in faces)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--budget-mb", type=float, default=None,
                    help="generator memory budget per chunk (default: the library's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    resettable = reset_peak()
    images = load_images()
    detector = make_face_detector("dlib")
    print(f"torch {torch.__version__}, {args.threads} threads, CPU, dlib detector "
          f"(upsample 0), load average {os.getloadavg()[0]:.2f}")
    rows = []
    for size in args.sizes:
        t0 = time.perf_counter()
        model, origin = build_model(size)
        print(f"face model {size}: {origin}, built in {time.perf_counter() - t0:.1f} s")
        warm = torch.rand(1, 3, size, size) * 2 - 1
        with torch.inference_mode():
            model.model(warm) if hasattr(model, "model") else model(warm)
        for name, image in images.items():
            best = None
            rss_before = _status_mb("VmRSS") or float("nan")
            reset_peak()
            for _ in range(args.repeat):
                r = run_case(image, detector, model, size, args.budget_mb)
                best = r if best is None or r["total"] < best["total"] else best
            rows.append((size, name, image.shape, best, rss_before, peak_mb(resettable),
                         os.getloadavg()[0]))
        del model
    print(f"\n{'size':>4} {'case':>8} {'image':>10} {'faces':>5} {'detect':>7} {'align':>6} "
          f"{'enhance':>8} {'blend':>6} {'total s':>8} {'RSS MB':>7} {'peak MB':>8} {'load':>5}")
    for size, name, shape, r, before, peak, load in rows:
        print(f"{size:>4} {name:>8} {f'{shape[1]}x{shape[0]}':>10} {r['faces']:>5} "
              f"{r['detect']:>7.2f} {r['align']:>6.2f} {r['enhance']:>8.2f} {r['blend']:>6.2f} "
              f"{r['total']:>8.2f} {before:>7.0f} {peak:>8.0f} {load:>5.2f}")
    if not resettable:
        print("(peak = process-wide ru_maxrss: /proc/self/clear_refs unavailable)")


if __name__ == "__main__":
    main()
