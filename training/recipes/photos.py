"""The photos the bundled models are trained and judged on: images that ship inside pip packages.

Each entry says where the file is inside its package, where the picture comes from and under
which licence, and whether it is a *training* photo or a *held-out* one (never seen in
training, used by ``benchmarks/quality.py``). Only pictures with a clear licence (public
domain, CC0, CC BY) are used. Files are read straight from the installed package folder, so
nothing is fetched (scikit-image's larger images, fetched by pooch, are not used).

:func:`collect` writes them as 8-bit RGB PNGs (grey pictures replicated to three channels, as
the restoration sees a grey scan) and fails with the ``pip install`` that is missing, rather
than training on a different set without saying so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import TrainingError

__all__ = ["Photo", "PHOTOS", "TRAIN", "HELD_OUT", "collect", "fit_max_side", "load_photo"]


@dataclass(frozen=True)
class Photo:
    """One picture shipped inside an installable package.

    Attributes:
        name: short id, also the PNG's name.
        package: the pip distribution that ships it (what to install when it is missing).
        module: the importable package holding the file.
        path: the file, relative to the module's folder.
        npz_key: for ``.npz`` files, the array's key.
        origin: who made the picture and where the package got it.
        licence: the picture's licence.
        split: ``"train"`` or ``"held-out"``.
    """

    name: str
    package: str
    module: str
    path: str
    origin: str
    licence: str
    split: str
    npz_key: str | None = None


_SKI = "scikit-image"
PHOTOS: tuple[Photo, ...] = (
    # --- training photos ---
    Photo("chelsea", _SKI, "skimage", "data/chelsea.png",
          "Chelsea the cat, photograph by Stefan van der Walt", "CC0", "train"),
    Photo("camera", _SKI, "skimage", "data/camera.png",
          "man with a camera (grey), photograph by Lav Varshney", "CC0", "train"),
    Photo("rocket", _SKI, "skimage", "data/rocket.jpg",
          "launch of DSCOVR on Falcon 9, photograph by SpaceX (flickr spacexphotos)",
          "public domain", "train"),
    Photo("coins", _SKI, "skimage", "data/coins.png",
          "Greek coins from Pompeii (grey), Brooklyn Museum collection via Wikimedia Commons",
          "public domain (no known copyright restrictions)", "train"),
    Photo("brick", _SKI, "skimage", "data/brick.png",
          "brick wall texture, CC0Textures Bricks25 (grey)", "CC0", "train"),
    Photo("grass", _SKI, "skimage", "data/grass.png",
          "grass texture, CC0Textures (grey)", "CC0", "train"),
    Photo("gravel", _SKI, "skimage", "data/gravel.png",
          "gravel texture, CC0Textures Gravel04 (grey)", "CC0", "train"),
    Photo("flower", "scikit-learn", "sklearn.datasets", "images/flower.jpg",
          "flower, photograph by vultilion on flickr (6056698931)", "CC BY 2.0", "train"),
    Photo("ascent", "PyWavelets", "pywt", "data/ascent.npz",
          "people climbing stairs (grey), from public-domain-image.com via SciPy",
          "public domain", "train", npz_key="data"),
    # --- held out: never trained on, the quality benchmark's photos ---
    Photo("astronaut", _SKI, "skimage", "data/astronaut.png",
          "Eileen Collins, NASA Great Images database", "public domain", "held-out"),
    Photo("coffee", _SKI, "skimage", "data/coffee.png",
          "a cup of coffee, photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar",
          "CC0", "held-out"),
    Photo("grace_hopper", "matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
          "Commodore Grace M. Hopper, official U.S. Navy photograph", "public domain",
          "held-out"),
    Photo("china", "scikit-learn", "sklearn.datasets", "images/china.jpg",
          "a temple in China, photograph by danielbuechele on flickr (6061409035)",
          "CC BY 2.0", "held-out"),
)
TRAIN = tuple(p for p in PHOTOS if p.split == "train")
HELD_OUT = tuple(p for p in PHOTOS if p.split == "held-out")


def _file(photo: Photo) -> Path:
    spec = importlib.util.find_spec(photo.module)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(f"photo {photo.name!r} ships in the {photo.package} package, which "
                            f"is not installed: pip install {photo.package}")
    path = Path(next(iter(spec.submodule_search_locations))) / photo.path
    if not path.is_file():
        raise TrainingError(f"photo {photo.name!r}: {path} is missing from the installed "
                            f"{photo.package} (a different version?)")
    return path


def load_photo(photo: Photo) -> np.ndarray:
    """The picture as ``uint8 [H, W, 3]`` RGB (grey replicated)."""
    path = _file(photo)
    if photo.npz_key is not None:
        with np.load(path) as f:
            arr = np.asarray(f[photo.npz_key])
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
    else:
        img = Image.open(io.BytesIO(path.read_bytes()))
    return np.asarray(img.convert("RGB"))


def fit_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (never upscale) so that the long side is at most ``max_side`` (0: keep).

    PIL's Lanczos filter widens with the reduction factor, so it is antialiased: a photo
    aliased by a naive resize would carry artefacts no detector or restoration should be
    scored on.
    """
    h, w = rgb.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    size = (max(16, round(w * s)), max(16, round(h * s)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def collect(photos: tuple[Photo, ...], dest: Path) -> dict[str, str]:
    """Write ``photos`` as ``dest/NAME.png``; returns ``{name: sha256 of the pixels}``, which
    the data card records so that a retraining can tell it saw the same pictures.

    Raises:
        TrainingError: a package or file is missing (with the ``pip install`` to run).
    """
    dest.mkdir(parents=True, exist_ok=True)
    digests = {}
    for photo in photos:
        arr = load_photo(photo)
        digests[photo.name] = hashlib.sha256(arr.tobytes()).hexdigest()
        out = dest / f"{photo.name}.png"
        tmp = out.with_name(out.name + ".tmp.png")
        Image.fromarray(arr).save(tmp)
        tmp.replace(out)
    return digests
