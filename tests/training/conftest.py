"""Fixtures of the training tests: tiny photo folders and one short run of every stage.

Photos are made here from scikit-image's bundled images (cropped and resized to under 100 px)
and synthetic shapes, in pytest's temporary folders. Each stage runs once per session (2 steps,
crop 32, width 8) and the tests that only inspect a run's outputs share it, which keeps the
whole training suite well under a minute on two cores.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# `training` is a top-level folder of the repository, not an installed package: make it
# importable when pytest is started as a script (which does not put the cwd on sys.path).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.cli import parse_config  # noqa: E402
from training.loop import RunResult, train  # noqa: E402

#: The tiny-run settings every smoke run uses (plus its own stage flags).
TINY = ["--steps", "2", "--batch", "2", "--crop", "32", "--width", "8", "--log-every", "1",
        "--sample-every", "2", "--workers", "1"]


def _skimage_photos() -> list[np.ndarray]:
    from skimage import data
    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(),
            np.stack([data.camera()] * 3, axis=-1)]


def write_photos(folder: Path, count: int = 5, size: tuple[int, int] = (72, 56),
                 seed: int = 0) -> Path:
    """``count`` RGB photos (w x h = ``size``) cut from scikit-image's images, as PNG/JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = _skimage_photos()
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 0.9))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        im = Image.fromarray(src[top:top + side, left:left + side]).resize(size, Image.BICUBIC)
        im.save(folder / (f"photo_{i}.png" if i % 2 == 0 else f"photo_{i}.jpg"), quality=95)
    return folder


@contextmanager
def single_thread():
    """One PyTorch thread inside the block (restored afterwards).

    The networks here are a few thousand parameters on 32 px crops: each operation takes
    microseconds, and with two threads the synchronisation of the thread pool costs more than
    the work (measured 5-10x slower on a busy 2-core machine). Results do not depend on it.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def run(args: list[str]) -> RunResult:
    """Parse ``args`` as the command line would and train in this process."""
    return train(parse_config(args))


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """Five small clean photos."""
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def old_photos(tmp_path_factory) -> Path:
    """Three small 'real old' photos: sepia-toned, with white scratches drawn in."""
    folder = tmp_path_factory.mktemp("old")
    write_photos(folder, count=3, size=(64, 48), seed=5)
    for p in folder.iterdir():
        arr = np.asarray(Image.open(p).convert("L"), dtype=np.float32)
        arr[:, 20] = 255
        toned = np.stack([arr * 1.0, arr * 0.9, arr * 0.7], axis=-1).clip(0, 255)
        Image.fromarray(toned.astype(np.uint8)).save(p)
    return folder


@pytest.fixture(scope="session")
def aligned_faces(tmp_path_factory) -> Path:
    """Two 'aligned' face crops (the astronaut's face, slightly shifted)."""
    from skimage import data
    folder = tmp_path_factory.mktemp("faces")
    a = data.astronaut()
    Image.fromarray(a[30:230, 140:320]).resize((64, 64)).save(folder / "f1.png")
    Image.fromarray(a[50:210, 160:300]).resize((48, 48)).save(folder / "f2.png")
    return folder


@pytest.fixture(scope="session")
def stage_runs(tmp_path_factory, photos, old_photos, aligned_faces) -> dict[str, Path]:
    """Output folder of a 2-step run of every stage and mapping variant (trained once)."""
    root = tmp_path_factory.mktemp("runs")
    out = {name: root / name for name in ("vae_clean", "vae_old", "mapping_quality",
                                          "mapping_scratch", "mapping_hr", "detector", "face")}
    with single_thread():
        _run_every_stage(out, photos, old_photos, aligned_faces)
    return out


def _run_every_stage(out: dict[str, Path], photos: Path, old_photos: Path,
                     aligned_faces: Path) -> None:
    run(["vae_clean", "--data", str(photos), "--out", str(out["vae_clean"]), *TINY])
    run(["vae_old", "--data", str(photos), "--old", str(old_photos),
         "--out", str(out["vae_old"]), *TINY])
    vaes = ["--vae-old", str(out["vae_old"] / "VAE_A.safetensors"),
            "--vae-clean", str(out["vae_clean"] / "VAE_B_quality.safetensors")]
    for variant in ("quality", "scratch", "hr"):
        run(["mapping", "--variant", variant, *vaes, "--data", str(photos),
             "--out", str(out[f"mapping_{variant}"]), *TINY])
    run(["detector", "--data", str(photos), "--out", str(out["detector"]), *TINY])
    run(["face", "--aligned", "--data", str(aligned_faces), "--out", str(out["face"]), *TINY])


@pytest.fixture
def tiny() -> list[str]:
    """The tiny-run flags (a fresh list, safe to extend)."""
    return list(TINY)


@pytest.fixture
def train_run():
    """``train_run(args) -> RunResult``: one in-process run from command-line arguments."""
    return run


_VGG19_CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128),
                12: (256, 256), 14: (256, 256), 16: (256, 256), 19: (512, 256),
                21: (512, 512), 23: (512, 512), 25: (512, 512), 28: (512, 512)}
# torchvision's VGG19 ``features``: conv indices (all 16 of them) and channel widths
_ALL_CONVS = {**_VGG19_CONVS, 30: (512, 512), 32: (512, 512), 34: (512, 512)}


def _torchvision_vgg19_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the exact key layout of ``torchvision.models.vgg19().state_dict()``."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (o, c) in _ALL_CONVS.items():
        sd[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * (2 / (9 * c)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(o)
    for i, (o, c) in {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}.items():
        sd[f"classifier.{i}.weight"] = torch.zeros(o, 1).expand(o, c)  # shape only matters
        sd[f"classifier.{i}.bias"] = torch.zeros(o)
    return sd


@pytest.fixture
def vgg19_sd():
    """``vgg19_sd(seed=0)``: random weights in torchvision's VGG19 key layout."""
    return _torchvision_vgg19_state_dict
