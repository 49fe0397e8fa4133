"""Contact sheet of the degradation synthesis, and its speed on a 1024² image.

Writes a PNG grid of 12 seeds on a sample photo: each tile shows the degraded photo and, beside
it, the same photo with the ground-truth defect mask in red. Then times ``degrade`` on a
1024×1024 RGB image on the CPU and prints the milliseconds per image.

Usage::

    python benchmarks/degrade_contact_sheet.py [OUT.png] [--image PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from oldphoto_core.degrade import degrade  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "samples" / "old" / "a.png"
DEFAULT_OUT = Path("/tmp/oldphoto_degrade_contact_sheet.png")


def load_rgb(path: Path) -> torch.Tensor:
    """``[1, 3, H, W]`` float 0..1 from an image file (alpha dropped)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def to_u8(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` 0..1 → ``uint8 [H, W, 3]`` RGB."""
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def tile(image: torch.Tensor, mask: torch.Tensor, label: str) -> np.ndarray:
    """Degraded photo | photo with the mask in red, labelled."""
    photo = to_u8(image)
    overlay = photo.copy()
    m = mask[0].bool().numpy()
    overlay[m] = (0.35 * overlay[m] + 0.65 * np.array([255, 0, 0])).astype(np.uint8)
    pair = np.concatenate([photo, np.full((photo.shape[0], 4, 3), 255, np.uint8), overlay], 1)
    cv2.putText(pair, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 2,
                cv2.LINE_AA)
    return pair


def contact_sheet(image: torch.Tensor, seeds: range, columns: int) -> np.ndarray:
    tiles = []
    for seed in seeds:
        res = degrade(image, seed=seed)
        frac = res.params[0]["mask_fraction"]
        tiles.append(tile(res.image[0], res.mask[0], f"seed {seed}  mask {100 * frac:.1f}%"))
    h, w = tiles[0].shape[:2]
    pad = 8
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 40, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):
              pad + c * (w + pad) + w] = t
    return sheet


def benchmark(image: torch.Tensor, size: int, runs: int) -> list[float]:
    """Milliseconds per ``degrade`` call on a ``size``² version of ``image`` (one per seed)."""
    big = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear",
                                          align_corners=False).clamp(0, 1)
    degrade(big, seed=10_000)  # warm-up
    times = []
    for seed in range(runs):
        t0 = time.perf_counter()
        degrade(big, seed=seed)
        times.append(1000 * (time.perf_counter() - t0))
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--columns", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024, help="side of the timed image")
    ap.add_argument("--runs", type=int, default=10, help="timed seeds")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    image = load_rgb(args.image)
    sheet = contact_sheet(image, range(args.seeds), args.columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"contact sheet: {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")

    times = benchmark(image, args.size, args.runs)
    print(f"degrade {args.size}x{args.size} RGB, CPU, {args.threads} threads, {args.runs} seeds: "
          f"median {statistics.median(times):.0f} ms, mean {statistics.mean(times):.0f} ms, "
          f"min {min(times):.0f} ms, max {max(times):.0f} ms per image")


if __name__ == "__main__":
    main()
