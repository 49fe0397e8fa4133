"""Learning is real: short runs improve held-out quality over the untrained networks.

Each run is a few dozen steps at 32 px (seconds on two cores); the assertions compare the
exported network with a freshly initialised one on photos the run never saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oldphoto_core.arch import OldPhotoVAE, ScratchUNet
from oldphoto_core.degrade import DegradeConfig
from oldphoto_core.loading import load_model
from oldphoto_core.stages.scratch import luma
from training.data import PhotoSource, sample_rng, scan_images
from training.data.damage import damage
from training.evaluate import mask_f1
from training.nets import init_weights

#: Structured damage only (scratches, dust, holes on the plain photo): a test of whether the
#: detector learns from its pairs, not of how hard the full recipe is.
STRUCTURED = DegradeConfig(unstructured_ops=(), grain_sigma_255=(0.0, 0.0), global_blur_prob=0.0,
                           vignette_prob=0.0, sepia_prob=0.0, fade_prob=0.0)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _crops(folder: Path, n: int, seed: int, crop: int = 32) -> torch.Tensor:
    src = PhotoSource(scan_images(folder, crop=crop).entries, crop=crop)
    return torch.stack([src.crop(k, seed, sample_rng(seed, 1, k)) for k in range(n)])


def _write_pairs(folder: Path, clean: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    xs, ms = [], []
    for k, c in enumerate(clean):
        img, mask = damage(c, seed * 1000 + k, STRUCTURED)
        u8 = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(u8).save(folder / "images" / f"{k}.png")
        Image.fromarray((mask[0].numpy() * 255).astype(np.uint8)).save(
            folder / "masks" / f"{k}.png")
        xs.append(luma(torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255)[0] * 2 - 1)
        ms.append(mask)
    return torch.stack(xs), torch.stack(ms)


def _best_f1(prob: torch.Tensor, mask: torch.Tensor) -> float:
    """F1 at the best single threshold over the whole held-out set (the ODS F-measure of edge
    detection): a measure of the ranking the detector learned, independent of its calibration
    after a few dozen steps."""
    return max(mask_f1(prob, mask, t) for t in THRESHOLDS)


def test_detector_raises_held_out_f1(photos, tmp_path, tiny, train_run):
    train_x, train_m = _write_pairs(tmp_path / "pairs", _crops(photos, 24, seed=1), seed=1)
    held_x, held_m = _write_pairs(tmp_path / "held", _crops(photos, 16, seed=2), seed=2)
    out = tmp_path / "run"
    train_run(["detector", "--data", str(tmp_path / "pairs"), "--pairs", str(tmp_path / "pairs"),
               "--pairs-fraction", "1", "--out", str(out), *tiny, "--steps", "30",
               "--batch", "8", "--lr", "2e-3", "--log-every", "10", "--sample-every", "0"])
    trained = load_model(out / "scratch_detector.safetensors", expect="scratch_unet").model
    torch.manual_seed(0)
    untrained = ScratchUNet(base=8).eval()
    with torch.no_grad():
        p_trained = torch.sigmoid(trained(held_x))
        p_untrained = torch.sigmoid(untrained(held_x))
    before, after = _best_f1(p_untrained, held_m), _best_f1(p_trained, held_m)
    # untrained: ~all pixels one class, F1 = 2p / (1 + p) for a scratch share p of ~3 %
    assert after > 2 * before, (before, after)
    assert mask_f1(p_trained, held_m) >= mask_f1(p_untrained, held_m)   # at the pipeline's 0.4


def test_vae_clean_lowers_held_out_reconstruction_l1(photos, tmp_path, tiny, train_run):
    held = tmp_path / "held"
    held.mkdir()
    from skimage import data
    for i, img in enumerate((data.astronaut()[::4, ::4], data.coffee()[::4, ::4])):
        Image.fromarray(np.ascontiguousarray(img)).save(held / f"{i}.png")
    x = _crops(held, 8, seed=9) * 2 - 1
    out = tmp_path / "run"
    train_run(["vae_clean", "--data", str(photos), "--out", str(out), *tiny, "--steps", "40",
               "--batch", "4", "--lr", "2e-3", "--log-every", "10", "--sample-every", "0"])
    trained = load_model(out / "VAE_B_quality.safetensors", expect="vae").model
    torch.manual_seed(0)
    untrained = OldPhotoVAE(channels=8)
    init_weights(untrained)
    with torch.no_grad():
        err = {name: (m.decode(m.encode(x)) - x).abs().mean().item()
               for name, m in (("untrained", untrained.eval()), ("trained", trained))}
    # An untrained VAE outputs about 0 (err ~ mean |x|); the best single colour per crop is
    # the first thing the decoder can learn through the unit-variance latent noise. A real
    # improvement covers at least half of that gap.
    flat = (x - x.mean(dim=(2, 3), keepdim=True)).abs().mean().item()
    assert err["trained"] < (err["untrained"] + flat) / 2, (err, flat)
