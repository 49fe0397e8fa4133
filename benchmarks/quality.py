"""Quality benchmark of a model set: synthetic damage on held-out photos, restored and scored.

Each held-out photo (:data:`training.recipes.photos.HELD_OUT`, never trained on) is downscaled
so that its long side is at most ``--max-side`` (PIL Lanczos, antialiased), kept 8-bit, damaged
by :func:`oldphoto_core.degrade.degrade` at each of ``--seeds`` and quantised back to 8 bits
(what a scan of the damaged print would be), then restored by :class:`oldphoto_core.Restorer`.
Per photo x seed, and on average, it prints:

* PSNR and SSIM against the clean photo of the damaged input, the restoration and a classical
  baseline (OpenCV non-local means, then Telea inpainting of the *detected* mask; a set
  without a detector is scored without AUC and F1 unless
  ``--detector`` lends one, and its baseline is non-local means alone). Both metrics
  are kornia's (``kornia.metrics.psnr``, ``kornia.metrics.ssim``: 11x11 Gaussian window, sigma
  1.5, ``padding="valid"`` so borders are not scored against reflected pixels) on RGB in 0..1;
* the scratch detector's ROC AUC (its probability map at the input's resolution against the
  ground-truth defect mask of ``degrade``) and F1 of its mask at the restoration's threshold;
  and both against the *visible* part of that mask (``DegradeConfig.mask_visible_threshold``:
  the drawn damage that still shows after the blur, noise and JPEG drawn for the row). No
  detector can find the rest, which caps the first AUC: a detector that marks exactly what
  shows scores ``0.5 + 0.5 * shown / drawn`` against the whole mask (``auc_cap``; 0.875 when a
  quarter of the mask is hidden);
* whether the restoration beat the baseline in PSNR, and on how many of the rows it did;
* the quality path's ceiling (:func:`quality_ceiling`): PSNR and SSIM of what a *perfect*
  quality mapping would give with this set's clean-photo VAE and output tone. What the
  restoration misses of it is the mapping's; what the ceiling misses of the clean photo is
  the VAE's and the tone's, which no mapping training recovers.

Synthetic damage is only a proxy for real ageing, so ``--samples DIR`` also restores real old
scans (no clean reference, no metrics) into a contact sheet to look at.

Usage::

    python benchmarks/quality.py                          # resolve_models(), 512 px, seeds 0-7
    python benchmarks/quality.py --models /tmp/smoke/models --max-side 256 --seeds 0
    python benchmarks/quality.py --scratch on --out /tmp/q  # always take the scratch path
    python benchmarks/quality.py --samples ../shared/samples --max-side 256
    python benchmarks/quality.py --threshold 0.85 \
        --detector runs/default/runs/detector/scratch_detector.safetensors  # one the set lacks

Writes ``OUT/quality_sheet.png`` (rows photo x seed, of the first ``--sheet-seeds``; columns
clean | damaged | restored | baseline: non-local means, then Telea inpainting of the detected
mask, or non-local means alone with a set that has no detector) and ``OUT/quality.json``
(every number), or ``OUT/samples_sheet.png`` (input | restored | baseline) with ``--samples``;
``OUT`` defaults to ``benchmarks/out/quality/``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from oldphoto_core.degrade import DEFAULT_CONFIG, degrade  # noqa: E402
from oldphoto_core.io.images import IMAGE_SUFFIXES, read_image  # noqa: E402
from oldphoto_core.io.resample import pil_resize  # noqa: E402
from oldphoto_core.loading import load_model  # noqa: E402
from oldphoto_core.models import resolve_models  # noqa: E402
from oldphoto_core.pipeline import SCRATCH_MODES, Restorer, reference_mask_quirk  # noqa: E402
from oldphoto_core.stages import decode_clean, encode_old  # noqa: E402
from oldphoto_core.stages.restore import quality_working_size  # noqa: E402
from training.recipes.photos import HELD_OUT, fit_max_side, load_photo  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "out" / "quality"
SSIM_WINDOW = 11
#: ``cv2.fastNlMeansDenoisingColored(src, None, h, hColor, templateWindowSize,
#: searchWindowSize)``: filter strength 10 for luma and colour, 7x7 patches searched in a
#: 21x21 window - OpenCV's documented recommendations, a fair untuned classical baseline.
NLM_PARAMS = (10, 10, 7, 21)
#: ``cv2.inpaint(..., inpaintRadius, cv2.INPAINT_TELEA)``: a 3 px neighbourhood, the usual
#: choice for thin scratches (the detected mask is not dilated, as the restoration's is not).
INPAINT_RADIUS = 3
#: ``degrade``'s recipe with the mask cut to the damage that still shows (same image).
VISIBLE = DEFAULT_CONFIG.replace(mask_visible_threshold=DEFAULT_CONFIG.mask_threshold)
LABEL_BAR = 14  # px above each tile for its label (PIL's default font)


# -- conversions and metrics -----------------------------------------------------------------
def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``[1, 3, H, W]`` float32 0..1 (one float32 division per value;
    copied, since arrays from PIL are read-only)."""
    return torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255


def to_u8(image: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` 0..1 -> ``uint8 [H, W, 3]`` (rounded, as a PNG would store it)."""
    return (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def psnr_ssim(image: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB, peak 1) and mean SSIM of ``[1, 3, H, W]`` RGB 0..1 against ``clean``."""
    psnr = kornia.metrics.psnr(image, clean, max_val=1.0)
    ssim = kornia.metrics.ssim(image, clean, SSIM_WINDOW, max_val=1.0, padding="valid")
    return float(psnr), float(ssim.mean())


def roc_auc_ranks(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic with average ranks for ties.

    Ties must share their rank: the probability map is nearest-upsampled, so every value
    repeats many times, and ranking ties arbitrarily would move the AUC. NaN with one class.
    """
    truth = truth.ravel().astype(bool)
    pos, neg = int(truth.sum()), int(truth.size - truth.sum())
    if pos == 0 or neg == 0:
        return math.nan
    _, inverse, counts = np.unique(score.ravel(), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based average ranks
    return float((ranks[truth].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC via scikit-learn when importable, else :func:`roc_auc_ranks`; NaN with one class
    (an undamaged crop has no scratch pixel to find)."""
    truth = truth.ravel().astype(bool)
    if truth.all() or not truth.any():
        return math.nan
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return roc_auc_ranks(truth, score)
    return float(roc_auc_score(truth, score.ravel()))


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """F1 of a binary mask; NaN when both masks are empty (nothing to find, nothing found)."""
    truth, pred = truth.astype(bool), pred.astype(bool)
    tp = int((truth & pred).sum())
    wrong = int((truth ^ pred).sum())
    return math.nan if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


# -- detection, baseline, evaluation ---------------------------------------------------------
@torch.inference_mode()
def detect(image: torch.Tensor, restorer: Restorer) -> tuple[torch.Tensor, torch.Tensor]:
    """The detector's probability map and the mask the restoration uses, ``[H, W]`` each, at
    the input's resolution: :meth:`Restorer.detect` at the restorer's working size, the
    reference's all-ones quirk, then nearest back to the input's size as the restoration
    resizes its mask; so the baseline inpaints exactly the mask the restoration sees and the
    AUC scores the map it thresholds (``evaluate_pair`` checks that).
    """
    size = tuple(image.shape[-2:])
    work = restorer.working_size(size)
    small = image if work == size else pil_resize(image, work, "lanczos")
    _, prob, mask = restorer.detect(small)
    mask = reference_mask_quirk(mask)
    for step in (work, size):  # nearest at each hop, as the restoration resizes its mask
        if tuple(prob.shape[-2:]) != step:
            prob = F.interpolate(prob, step, mode="nearest")
            mask = F.interpolate(mask, step, mode="nearest")
    return prob[0, 0], mask[0, 0]


def detect_if_able(image: torch.Tensor, restorer: Restorer
                   ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`detect`, or for a set without a detector ``(None, all-zero mask)``: nothing to
    score, and the baseline, given no mask, is non-local means alone."""
    if "scratch_detector" in restorer.store:
        return detect(image, restorer)
    return None, torch.zeros(image.shape[-2:])


@torch.inference_mode()
def quality_ceiling(clean: torch.Tensor, damaged: torch.Tensor,
                    restorer: Restorer) -> torch.Tensor:
    """The quality path with a perfect mapping: ``[1, 3, H, W]`` 0..1.

    A perfect mapping would hand the decoder the clean-photo VAE's own latent of the clean
    photo, so that is decoded here, at the quality path's working size, and toned as the
    restoration tones (``"anchor"`` takes the tone of the *damaged* input, the only photo a
    restoration has), then resized back as the restoration resizes.
    """
    size = tuple(clean.shape[-2:])
    work = quality_working_size(*size)
    clean_w, damaged_w = (pil_resize(x, work, "bilinear") for x in (clean, damaged))
    vae_b = restorer.store.get("vae_b_quality")
    latent = replace(encode_old(clean_w, vae_b), domain="clean", source=damaged_w)
    out = decode_clean(latent, vae_b, tone=restorer.tone, restore_size=False)
    return pil_resize(out, size, "bicubic")


def baseline(damaged: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Classical restoration of ``uint8 [H, W, 3]`` RGB: non-local means, then Telea inpainting
    of ``mask`` (non-zero = defect). OpenCV works in BGR: NLM denoises in CIELAB from it."""
    bgr = cv2.cvtColor(damaged, cv2.COLOR_RGB2BGR)
    bgr = cv2.fastNlMeansDenoisingColored(bgr, None, *NLM_PARAMS)
    bgr = cv2.inpaint(bgr, (mask > 0).astype(np.uint8) * 255, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def evaluate_pair(clean: np.ndarray, seed: int, restorer: Restorer, *,
                  scratch: str = "auto") -> dict:
    """Damage ``clean`` (``uint8 [H, W, 3]``) with ``seed``, restore it, score everything.

    Returns:
        JSON-ready numbers (``damaged_psnr/ssim``, ``restored_psnr/ssim``,
        ``baseline_psnr/ssim``, ``ceiling_psnr/ssim`` (:func:`quality_ceiling`), ``auc``,
        ``f1``, ``auc_visible``, ``f1_visible``, ``auc_cap`` (the AUC of a detector perfect
        on the damage that still shows), ``gt_mask_fraction``, ``visible_mask_fraction``,
        ``detected_mask_fraction`` (at the threshold), ``used_mask_fraction`` (what the
        restoration and the baseline use: zero when the detection covers everything),
        ``mode``, ``beats_baseline``, ``mask_agrees`` (whether :func:`detect` reproduced the
        restoration's mask; None with ``scratch="off"``) and seconds), plus ``images``:
        ``uint8 [H, W, 3]`` clean, damaged, restored, baseline.
    """
    clean_t = to_tensor(clean)
    damage = degrade(clean_t, seed=seed)
    shown = degrade(clean_t, seed=seed, config=VISIBLE).mask[0, 0].numpy() > 0.5
    damaged = to_u8(damage.image)  # a scan of the damaged print is 8-bit
    damaged_t = to_tensor(damaged)
    t0 = time.perf_counter()
    result = restorer.restore(damaged_t, scratch=scratch)
    t_restore = time.perf_counter() - t0
    prob, mask = detect_if_able(damaged_t, restorer)
    t0 = time.perf_counter()
    base = baseline(damaged, mask.numpy())
    t_base = time.perf_counter() - t0
    restored = to_u8(result.images)
    truth = damage.mask[0, 0].numpy() > 0.5
    row: dict = {"mode": result.mode}
    ceiling = to_tensor(to_u8(quality_ceiling(clean_t, damaged_t, restorer)))
    for name, img in (("damaged", damaged_t), ("restored", result.images.float()),
                      ("baseline", to_tensor(base)), ("ceiling", ceiling)):
        row[f"{name}_psnr"], row[f"{name}_ssim"] = psnr_ssim(img, clean_t)
    row.update(dict.fromkeys(("auc", "f1", "auc_visible", "f1_visible",
                              "detected_mask_fraction"), math.nan))
    if prob is not None:
        found = (prob >= restorer.scratch_threshold).numpy()  # before the all-ones quirk
        row.update(auc=roc_auc(truth, prob.numpy()), f1=f1(truth, found),
                   auc_visible=roc_auc(shown, prob.numpy()), f1_visible=f1(shown, found),
                   detected_mask_fraction=float(found.mean()))
    row.update(
        auc_cap=roc_auc(truth, shown.astype(np.float32)),  # a perfect detector of what shows
        gt_mask_fraction=float(truth.mean()), visible_mask_fraction=float(shown.mean()),
        used_mask_fraction=float(mask.mean()),
        beats_baseline=row["restored_psnr"] > row["baseline_psnr"],
        mask_agrees=(None if restorer.scratch_mode(scratch) == "off"
                     else bool(torch.equal(result.masks[0, 0], mask))),
        restore_seconds=t_restore, baseline_seconds=t_base,
        images={"clean": clean, "damaged": damaged, "restored": restored, "baseline": base})
    return row


# -- contact sheets --------------------------------------------------------------------------
def labelled(tile: np.ndarray, text: str) -> Image.Image:
    """``tile`` under a dark bar carrying ``text`` (PIL's default font), so the label never
    hides the pixels being judged."""
    h, w = tile.shape[:2]
    im = Image.new("RGB", (w, h + LABEL_BAR), (30, 30, 30))
    im.paste(Image.fromarray(tile), (0, LABEL_BAR))
    ImageDraw.Draw(im).text((3, 1), text, fill=(255, 255, 150))
    return im


def contact_sheet(rows: list[list[tuple[np.ndarray, str]]], pad: int = 6) -> Image.Image:
    """Rows of labelled tiles; rows may differ in size (photos differ in aspect ratio)."""
    rows_im = [[labelled(t, s) for t, s in row] for row in rows]
    widths = [sum(t.width for t in r) + pad * (len(r) + 1) for r in rows_im]
    heights = [max(t.height for t in r) + pad for r in rows_im]
    sheet = Image.new("RGB", (max(widths), sum(heights) + pad), (60, 60, 60))
    y = pad
    for r, h in zip(rows_im, heights, strict=True):
        x = pad
        for t in r:
            sheet.paste(t, (x, y))
            x += t.width + pad
        y += h
    return sheet


# -- command line ----------------------------------------------------------------------------
METRICS = ("damaged_psnr", "damaged_ssim", "restored_psnr", "restored_ssim", "baseline_psnr",
           "baseline_ssim", "ceiling_psnr", "ceiling_ssim", "auc", "f1", "auc_visible",
           "f1_visible", "auc_cap", "gt_mask_fraction",
           "visible_mask_fraction", "detected_mask_fraction", "used_mask_fraction")
HEADER = (f"{'photo':<13}{'seed':>4} {'mode':<8}{'dmg dB':>7}{'SSIM':>6}{'res dB':>7}{'SSIM':>6}"
          f"{'base dB':>8}{'SSIM':>6}{'ceil dB':>8}{'SSIM':>6}{'AUC':>6}{'F1':>6}{'AUCv':>6}"
          f"{'F1v':>6}{'gt%':>6}"
          f"{'vis%':>6}{'det%':>6}  beat")


def table_line(start: str, r: dict) -> str:
    """One line of the printed table (``start`` holds the photo and seed columns)."""
    beat = {True: "yes", False: "no"}.get(r.get("beats_baseline"), "")
    return (f"{start} {r['mode']:<8}{r['damaged_psnr']:7.2f}{r['damaged_ssim']:6.3f}"
            f"{r['restored_psnr']:7.2f}{r['restored_ssim']:6.3f}{r['baseline_psnr']:8.2f}"
            f"{r['baseline_ssim']:6.3f}{r['ceiling_psnr']:8.2f}{r['ceiling_ssim']:6.3f}"
            f"{r['auc']:6.3f}{r['f1']:6.3f}{r['auc_visible']:6.3f}"
            f"{r['f1_visible']:6.3f}{100 * r['gt_mask_fraction']:6.1f}"
            f"{100 * r['visible_mask_fraction']:6.1f}{100 * r['detected_mask_fraction']:6.1f}"
            f"  {beat}")


def _nanmean(values: list[float]) -> float:
    """Mean over the defined values (an AUC is NaN on a row without damage); NaN if none."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _json_ready(v):
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_ready(x) for x in v]
    return v


def sheet_row(photo: str, seed: int, r: dict, im: dict) -> list[tuple[np.ndarray, str]]:
    """The contact sheet's row of one photo x seed: clean | damaged | restored | baseline."""
    return [(im["clean"], f"{photo} seed {seed}"),
            (im["damaged"], f"damaged {r['damaged_psnr']:.2f} dB, SSIM {r['damaged_ssim']:.3f}"),
            (im["restored"], f"restored ({r['mode']}) {r['restored_psnr']:.2f} dB, "
                             f"SSIM {r['restored_ssim']:.3f}"),
            (im["baseline"], f"baseline {r['baseline_psnr']:.2f} dB, "
                             f"SSIM {r['baseline_ssim']:.3f}")]


def run_benchmark(args: argparse.Namespace, restorer: Restorer) -> None:
    """Every held-out photo x seed: print the table, write the sheet and the JSON."""
    print(HEADER)
    rows, sheet = [], []
    for photo in HELD_OUT:
        clean = fit_max_side(load_photo(photo), args.max_side)
        for seed in args.seeds:
            r = evaluate_pair(clean, seed, restorer, scratch=args.scratch)
            im = r.pop("images")
            r.update(photo=photo.name, seed=seed, size=list(clean.shape[:2]))
            rows.append(r)
            print(table_line(f"{photo.name:<13}{seed:>4}", r), flush=True)
            if r["mask_agrees"] is False:
                print("  warning: detect() did not reproduce the restoration's mask")
            if args.sheet_seeds <= 0 or seed in args.seeds[:args.sheet_seeds]:
                sheet.append(sheet_row(photo.name, seed, r, im))
    mean: dict = {k: _nanmean([r[k] for r in rows]) for k in METRICS}
    wins = sum(r["beats_baseline"] for r in rows)
    print(table_line(f"{'mean':<17}", {**mean, "mode": ""}))
    print(f"restoration better than baseline (PSNR) on {wins} of {len(rows)} photo x seed")
    print(f"AUC cap (a detector that marks exactly the damage that still shows): "
          f"{mean['auc_cap']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    png, js = args.out / "quality_sheet.png", args.out / "quality.json"
    contact_sheet(sheet).save(png)
    report = {"models": restorer.store.label, "scratch": args.scratch,
              "threshold": restorer.scratch_threshold, "max_side": args.max_side,
              "seeds": args.seeds, "metrics": f"kornia {kornia.__version__} psnr (max_val 1) "
              f"and ssim (window {SSIM_WINDOW}, padding valid) on RGB 0..1; damaged input "
              "quantised to 8 bits", "baseline": {"nlm": NLM_PARAMS,
                                                 "inpaint_radius": INPAINT_RADIUS},
              "rows": rows, "mean": mean, "better_than_baseline": [wins, len(rows)]}
    js.write_text(json.dumps(_json_ready(report), indent=1))
    print(f"contact sheet: {png}\nnumbers: {js}")


def run_samples(args: argparse.Namespace, restorer: Restorer) -> None:
    """Restore every image under ``--samples``; sheet of input | restored | baseline."""
    rows = []
    for path in sorted(p for p in args.samples.rglob("*") if p.is_file()):
        name = path.relative_to(args.samples).as_posix()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            print(f"skipped {name}: not an image")
            continue
        image, _ = read_image(path)
        rgb = image[:, :3] if image.shape[1] >= 3 else image.expand(-1, 3, -1, -1)
        photo = fit_max_side(to_u8(rgb), args.max_side)  # alpha dropped, 8 bits
        x = to_tensor(photo)
        result = restorer.restore(x, scratch=args.scratch)
        prob, mask = detect_if_able(x, restorer)
        base = baseline(photo, mask.numpy())
        found = ("no detector" if prob is None else
                 f"detected {100 * float((prob >= restorer.scratch_threshold).float().mean()):.1f}"
                 "%")
        print(f"{name}: {photo.shape[1]}x{photo.shape[0]} {result.mode}, {found}, inpainted "
              f"{100 * float(mask.mean()):.1f}%", flush=True)
        rows.append([(photo, name), (to_u8(result.images), f"restored ({result.mode})"),
                     (base, "baseline (NLM alone)" if prob is None else
                      f"baseline (inpainted {100 * float(mask.mean()):.1f}%)")])
    if not rows:
        raise SystemExit(f"no images under {args.samples}")
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "samples_sheet.png"
    contact_sheet(rows).save(png)
    print(f"contact sheet: {png}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=None, metavar="DIR",
                    help="model set folder (a manifest.json is honoured); default: as the CLI")
    ap.add_argument("--scratch", choices=SCRATCH_MODES, default="auto")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)),
                    help="degrade seeds per photo (default 0-7: the damage drawn varies a "
                         "lot from seed to seed, so few seeds make a noisy mean)")
    ap.add_argument("--sheet-seeds", type=int, default=2, metavar="N",
                    help="rows of the first N seeds go into the contact sheet (default 2; "
                         "0: all), which stays small enough to look at")
    ap.add_argument("--max-side", type=int, default=512, help="0: full size")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--samples", type=Path, default=None, metavar="DIR",
                    help="restore the real scans in DIR instead (no metrics)")
    ap.add_argument("--detector", type=Path, default=None, metavar="FILE",
                    help="a scratch detector to score (AUC, F1) and to give the baseline its "
                         "mask when the model set has none")
    ap.add_argument("--threshold", type=float, default=None, metavar="P",
                    help="the detector's threshold (F1, the baseline's mask, the scratch "
                         "path); default: the set's, e.g. what the recipe calibrated, else 0.4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch and OpenCV threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    store = resolve_models(args.models, device=args.device)  # a set's manifest.json too
    print(f"models: {store.label}")
    restorer = Restorer(store, device=args.device, scratch_threshold=args.threshold)
    restorer.check_models(args.scratch)
    if args.detector and "scratch_detector" not in store:
        store.put("scratch_detector", load_model(args.detector, expect="scratch_detector",
                                                 device=args.device))
        print(f"detector: {args.detector} (scored; the restoration runs "
              f"{restorer.scratch_mode(args.scratch)!r})")
    if "scratch_detector" not in store:
        print("no scratch detector in this set (give one with --detector): no AUC or F1, and "
              "the baseline is non-local means without inpainting")
    (run_samples if args.samples else run_benchmark)(args, restorer)


if __name__ == "__main__":
    main()
