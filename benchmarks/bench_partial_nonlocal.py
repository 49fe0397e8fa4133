"""Wall time and peak memory of the partial non-local block: reference-style vs ours.

The reference materialises the N x N affinity (N = latent pixels); ours streams query chunks
against the clean keys only. Each measurement runs in a fresh subprocess so that peak RSS
(``ru_maxrss``) belongs to that measurement alone. Random weights, 512 channels, a scratch mask
covering about 3 % of the image (thin random strokes at image resolution, like scratches).

Usage::

    python benchmarks/bench_partial_nonlocal.py                 # the issue's table, CPU
    python benchmarks/bench_partial_nonlocal.py --device cuda   # ours on a GPU as well

The largest size (500x752 latent, a 2000x3008 scan) is far beyond the reference (its affinity
alone would be 527 GiB). On CPU, computing every query of it takes tens of minutes, so by default
only ``--max-chunks`` query chunks are run there: peak memory is then exact (it does not grow with
the number of chunks) and the time is projected from the measured chunks, and printed as such.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

SIZES = [(64, 64), (124, 156), (250, 376), (500, 752)]
CHANNELS = 512


def scratch_mask(h: int, w: int, coverage: float, seed: int = 0) -> torch.Tensor:
    """Image-resolution {0,1} mask of random thin strokes covering about ``coverage``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(h * w, dtype=torch.bool)
    target = coverage * h * w
    ys = torch.arange(h)
    while mask.sum() < target:
        x0 = torch.randint(0, w, (1,), generator=g).item()
        slope = (torch.rand(1, generator=g).item() - 0.5) * 0.6
        width = 2 + torch.randint(0, 4, (1,), generator=g).item()
        xs = (x0 + slope * ys).round().long()
        for d in range(width):
            xx = (xs + d).clamp(0, w - 1)
            mask[ys * w + xx] = True
    return mask.view(1, 1, h, w).float()


def reference_style(block, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference's formulation: full N x N affinity, masked and L1-renormalised."""
    b, c, h, w = x.shape
    g_x = block.g(x).view(b, c, -1).permute(0, 2, 1)
    theta = block.theta(x).view(b, c, -1).permute(0, 2, 1)
    phi = block.phi(x).view(b, c, -1)
    f = F.softmax(torch.matmul(theta, phi), dim=2)
    tmp = F.interpolate(1 - mask, (h, w))
    m = F.interpolate(mask, (h, w), mode="bilinear")
    m[m > 0] = 1.0
    m = (1 - m) * tmp
    f = F.normalize(m.view(b, 1, -1).repeat(1, h * w, 1) * f, p=1, dim=2)
    y = torch.matmul(f, g_x).permute(0, 2, 1).contiguous().view(b, c, h, w)
    wy = block.res_block(block.W(y))
    return m * x + (1 - m) * wy


def measure(impl: str, h: int, w: int, device: str, max_chunks: int | None) -> dict:
    from oldphoto_core.arch.partial_nonlocal import (
        DEFAULT_CHUNK_ELEMENTS,
        PartialNonLocalBlock,
        clean_indicator,
        partial_attention,
    )
    torch.manual_seed(0)
    block = PartialNonLocalBlock(CHANNELS).eval().to(device)
    x = torch.randn(1, CHANNELS, h, w, device=device)
    mask = scratch_mask(4 * h, 4 * w, 0.03).to(device)
    n = h * w
    result = {"impl": impl, "latent": f"{h}x{w}", "device": device, "N": n}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        if impl == "reference":
            reference_style(block, x, mask)
        elif max_chunks is None:
            block(x, mask)
        else:
            # attention only, on the first chunks: once on 1 chunk and once on 1 + max_chunks,
            # so that the fixed cost (projections, key gathers) separates from the per-chunk cost
            clean = clean_indicator(mask, (h, w)).flatten(1)
            rows = max(1, DEFAULT_CHUNK_ELEMENTS // n)
            theta, phi, g = (m(x).flatten(2) for m in (block.theta, block.phi, block.g))
            times = []
            for chunks in (1, 1 + max_chunks):
                t1 = time.perf_counter()
                partial_attention(theta[..., : rows * chunks], phi, g, clean)
                times.append(time.perf_counter() - t1)
            per_chunk = (times[1] - times[0]) / max_chunks
            fixed = max(0.0, times[0] - per_chunk)
            result["chunks_run"] = 2 + max_chunks
            result["chunks_total"] = math.ceil(n / rows)
            result["projected_attention_seconds"] = fixed + per_chunk * result["chunks_total"]
        sync()
        result["seconds"] = time.perf_counter() - t0
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device.startswith("cuda"):
        result["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-chunks", type=int, default=6,
                    help="query chunks to run on CPU at 500x752 (time is projected)")
    ap.add_argument("--one", nargs=4, metavar=("IMPL", "H", "W", "CHUNKS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        impl, h, w, chunks = args.one
        print(json.dumps(measure(impl, int(h), int(w), args.device,
                                 None if chunks == "all" else int(chunks))))
        return
    if args.device.startswith("cuda"):
        mem_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    else:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rows = []
    for h, w in SIZES:
        n = h * w
        ref_gib = 4 * n * n * 4 / 2**30  # f, softmax, repeated mask, product: four N x N floats
        if ref_gib < 0.7 * mem_gib:
            rows.append(_child("reference", h, w, args, "all"))
        else:
            rows.append({"impl": "reference", "latent": f"{h}x{w}", "N": n,
                         "skipped": f"needs about {ref_gib:,.0f} GiB for its N x N matrices"})
        big = (h, w) == SIZES[-1] and args.device == "cpu"
        rows.append(_child("ours", h, w, args, str(args.max_chunks) if big else "all"))
    print(f"\n{'impl':10} {'latent':>9} {'N':>7} {'seconds':>10} {'peak RSS GiB':>13}  notes")
    for r in rows:
        if "skipped" in r:
            print(f"{r['impl']:10} {r['latent']:>9} {r['N']:>7} {'-':>10} {'-':>13}  "
                  f"not run: {r['skipped']}")
            continue
        note = ""
        if "projected_attention_seconds" in r:
            note = (f"attention run on {r['chunks_run']} of {r['chunks_total']} query chunks; "
                    f"all queries projected {r['projected_attention_seconds']:.0f} s")
        if "peak_cuda_gib" in r:
            note += f" peak CUDA {r['peak_cuda_gib']:.2f} GiB"
        print(f"{r['impl']:10} {r['latent']:>9} {r['N']:>7} {r['seconds']:>10.2f} "
              f"{r['peak_rss_gib']:>13.2f}  {note}")


def _child(impl: str, h: int, w: int, args: argparse.Namespace, chunks: str) -> dict:
    cmd = [sys.executable, __file__, "--device", args.device, "--threads", str(args.threads),
           "--one", impl, str(h), str(w), chunks]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"impl": impl, "latent": f"{h}x{w}", "N": h * w,
                "skipped": f"failed: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
