"""The whole restoration as one object that loads its models once (used by the CLI and nodes).

Stage 1 follows the reference's ``run.py``: in the scratch modes the photo is first resized to a
multiple of 16 (bicubic), scratches are detected, painted white, and the photo is encoded, mapped
with the partial non-local (or, with ``hr``, the patch-attention) mapping and decoded with
VAE_B_scratch; in the quality mode it is resized to a multiple of 4 (bilinear) and goes through
the plain mapping and VAE_B_quality. Unlike the reference, the result is brought back to the
input's size, gray inputs stay gray and RGBA inputs keep their alpha.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import InputError
from .io.resample import pil_resize, round_to_multiple
from .models import ModelStore, auto_mode, quality_reason, required_roles, resolve_models
from .runtime.checks import check_images
from .runtime.memory import check_fits
from .runtime.numerics import PRECISIONS, use_precision
from .runtime.progress import Progress
from .stages.restore import (
    decode_clean,
    encode_old,
    map_latent,
    quality_working_size,
)
from .stages.scratch import dilate_mask, luma, scratch_probability
from .stages.tone import TONES, apply_tone

__all__ = ["Restorer", "RestoreResult", "SCRATCH_MODES", "FACE_MODES"]

SCRATCH_MODES = ("auto", "on", "off")
FACE_MODES = ("off", "auto", "insightface", "dlib")
log = logging.getLogger("oldphoto")

#: Latent positions from which the exact scratch attention (O(N^2) work) is slow on a CPU.
SLOW_ATTENTION_POSITIONS = 150_000
HR_MASK_DILATION = 3        # test.py --HR: cv2.dilate(mask, ones(3, 3), iterations=3)
DETECTION_MULTIPLE = 16     # detection.py --input_size full_size


@dataclass
class RestoreResult:
    """Output of :meth:`Restorer.restore`.

    Attributes:
        images: ``[B, C, H, W]`` restored, same size and channels as the input.
        masks: ``[B, 1, H, W]`` scratch masks at the input size (zeros when not detected).
        mode: ``"quality"``, ``"scratch"`` or ``"hr"`` - what stage 1 ran.
        working: intermediate tensors at the reference's working size, for inspection and
            parity checks: ``input`` (resized photo), ``mask``, ``restored`` (before the
            save-time stretch) and ``stretched``.
        faces: per batch item, the faces enhanced (empty when faces were off).
    """

    images: torch.Tensor
    masks: torch.Tensor
    mode: str
    working: dict[str, torch.Tensor] = field(default_factory=dict)
    faces: list[list] = field(default_factory=list)


class Restorer:
    """Old-photo restoration with models loaded once.

    Args:
        models: a :class:`~oldphoto_core.models.ModelStore`, a models folder (used strictly),
            or ``None``: the published checkpoints when found, else the bundled default set
            (:func:`~oldphoto_core.models.resolve_models`; ``self.store.label`` says which).
        device: where the networks run (``"cpu"``, ``"cuda"`` ...).
        scratch_threshold: detector probability threshold; ``None``: what the model set asks
            for (its manifest's ``scratch_threshold``), else 0.4, the reference's.
        auto_min_coverage: in ``scratch="auto"``, the share of scratch pixels from which the
            scratch path is taken (below it the photo goes through the quality path).
        tone: how the output's brightness, contrast and colour cast are set
            (:mod:`oldphoto_core.stages.tone`): ``"auto"`` (what the model set asks for:
            ``"reference"`` for the published checkpoints, ``"anchor"`` for the bundled set),
            ``"reference"`` (the reference's min-max stretch), ``"anchor"`` (the input's tone)
            or ``"none"``.
        insightface_root: folder of insightface model packs (for ``faces="insightface"/"auto"``).
        tile: run the convolutional stacks in exact strips: ``"on"``, ``"off"`` or ``"auto"``
            (from ``tile_from_megapixels``). Attention stays global; results are the same up to
            float summation order, peak memory is lower on large scans.
        precision: ``"exact"`` (strict fp32, as the reference) or ``"tf32"`` (faster on recent
            NVIDIA GPUs, outside the parity tolerances; see :mod:`oldphoto_core.runtime.numerics`).
        max_megapixels: restore photos larger than this at a working size of this many
            megapixels (same aspect ratio) and upsample the result to the input's size (bicubic);
            ``None``: always at the input's size.
        check_memory: estimate the memory a photo needs before any work and refuse it with
            :class:`~oldphoto_core.errors.InsufficientMemoryError` when it would not fit (CPU
            memory; see :mod:`oldphoto_core.runtime.memory`).
    """

    def __init__(self, models: ModelStore | str | None = None, *,
                 device: torch.device | str = "cpu", scratch_threshold: float | None = None,
                 auto_min_coverage: float = 0.001, tone: str = "auto",
                 insightface_root: str | None = None, tile: str = "auto",
                 tile_from_megapixels: float = 2.0, precision: str = "exact",
                 max_megapixels: float | None = None, check_memory: bool = True) -> None:
        self.store = models if isinstance(models, ModelStore) else resolve_models(
            models, device=device)
        if scratch_threshold is not None and not 0 < scratch_threshold < 1:
            raise InputError(f"scratch_threshold must be between 0 and 1, got "
                             f"{scratch_threshold!r}")
        self._threshold = scratch_threshold
        self.auto_min_coverage = auto_min_coverage
        if tone not in ("auto", *TONES):
            raise InputError(f"tone must be 'auto' or one of {TONES}, got {tone!r}")
        self.tone = self.store.tone if tone == "auto" else tone
        self.insightface_root = insightface_root
        if tile not in ("auto", "on", "off"):
            raise InputError(f"tile must be 'auto', 'on' or 'off', got {tile!r}")
        self.tile, self.tile_from_megapixels = tile, tile_from_megapixels
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        if max_megapixels is not None and not max_megapixels > 0:
            raise InputError(f"max_megapixels must be positive, got {max_megapixels!r}")
        self.max_megapixels, self.check_memory = max_megapixels, check_memory
        self._detectors: dict[str, object] = {}
        self._said_no_scratch = False

    @property
    def scratch_threshold(self) -> float:
        """The detector threshold in use: the one given, else the model set's, else 0.4
        (read at each use: a host may hand this restorer another store)."""
        if self._threshold is not None:
            return self._threshold
        return self.store.settings.detector_threshold

    def _tile(self, image: torch.Tensor) -> bool:
        return self._tiles(image.shape[-2] * image.shape[-1])

    def _tiles(self, pixels: int) -> bool:
        if self.tile != "auto":
            return self.tile == "on"
        return pixels >= self.tile_from_megapixels * 1e6

    def working_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` the networks run at for an input of ``size``: the input's own size, or
        ``max_megapixels`` worth of it at the same aspect ratio."""
        h, w = size
        if self.max_megapixels is None or h * w <= self.max_megapixels * 1e6:
            return h, w
        s = math.sqrt(self.max_megapixels * 1e6 / (h * w))
        return max(16, int(h * s)), max(16, int(w * s))

    def check_fits(self, size: tuple[int, int], *, scratch: str = "auto", hr: bool = False,
                   faces: bool = False) -> None:
        """Refuse, before any work, a photo of ``size = (H, W)`` that would not fit in memory.

        Raises:
            InsufficientMemoryError: with the largest working size that fits.
        """
        if not self.check_memory:
            return
        check_fits(_mode_name(scratch, hr), size, self.working_size(size),
                   tiled_at=self._tiles, device=self._run_device(), faces=faces)

    def _run_device(self) -> torch.device:
        """Where the networks run now: a host (ComfyUI) may have moved the store's models."""
        try:
            return self.store.get("vae_a").device
        except Exception:  # not loadable: check_models names it; plan for the store's device
            return self.store.device

    def face_detector(self, kind: str):
        """The face detector of this backend kind, created once."""
        if kind not in self._detectors:
            from .faces import make_face_detector
            self._detectors[kind] = make_face_detector(kind,
                                                       insightface_root=self.insightface_root)
        return self._detectors[kind]

    def scratch_mode(self, scratch: str, hr: bool = False) -> str:
        """``scratch`` as it will run: ``"auto"`` becomes ``"off"`` with a model set that
        declares no scratch networks (:func:`~oldphoto_core.models.auto_mode`)."""
        if scratch == "auto" and auto_mode(self.store, hr) == "quality":
            if not self._said_no_scratch:
                log.info("oldphoto: scratch='auto' runs the quality path with %s (%s)",
                         self.store.label, quality_reason(self.store))
                self._said_no_scratch = True
            return "off"
        return scratch

    def check_models(self, scratch: str = "auto", hr: bool = False, faces: bool = False,
                     face_size: int = 256) -> None:
        """Raise a message naming every missing checkpoint for this configuration."""
        scratch = self.scratch_mode(scratch, hr)
        self.store.require(required_roles(_mode_name(scratch, hr), faces=faces,
                                          face_size=face_size))

    def restore(self, images: torch.Tensor, *, scratch: str = "auto", hr: bool = False,
                faces: str = "off", face_size: int | None = None,
                keep_gray: bool = True, face_detector: object | None = None,
                progress: Progress | None = None) -> RestoreResult:
        """Restore a batch of photos of one size.

        Args:
            images: ``[B, C, H, W]`` float 0..1, C = 1 (gray), 3 (RGB) or 4 (RGBA).
            scratch: ``"on"`` (detect and repair scratches), ``"off"`` (quality path only) or
                ``"auto"`` (detect; repair when the mask covers ``auto_min_coverage``).
            hr: use the high-resolution patch-attention mapping for scratches.
            faces: ``"off"``, or the face detector backend (``"auto"``, ``"insightface"``,
                ``"dlib"``) to enhance faces after the global restoration (paper §3.4).
            face_size: 256 (``Setting_9_epoch_100``) or 512 (``FaceSR_512``); default 512
                with ``hr``, else 256, as the reference's ``run.py``.
            keep_gray: gray inputs come back gray (``False``: as RGB).
            face_detector: a ready :class:`~oldphoto_core.faces.FaceDetector` to use instead of
                building the ``faces`` backend (``faces`` must then not be ``"off"``).
            progress: ``progress(done, total)`` over the scratch mapping's attention, the step
                that takes minutes on large scans (see :mod:`oldphoto_core.runtime.progress`);
                it may raise to abort.
        """
        if scratch not in SCRATCH_MODES:
            raise InputError(f"scratch must be one of {SCRATCH_MODES}, got {scratch!r}")
        if faces not in FACE_MODES:
            raise InputError(f"faces must be one of {FACE_MODES}, got {faces!r}")
        face_size = face_size or (512 if hr else 256)
        if face_size not in (256, 512):
            raise InputError(f"face_size must be 256 or 512, got {face_size}")
        check_images(images)
        scratch = self.scratch_mode(scratch, hr)
        self.check_models(scratch, hr, faces != "off", face_size)
        self.check_fits(tuple(images.shape[-2:]), scratch=scratch, hr=hr, faces=faces != "off")
        if faces == "off":
            face_detector = None
        elif face_detector is None:
            face_detector = self.face_detector(faces)
        with use_precision(self.precision):
            return self._restore(images, scratch, hr, face_detector, face_size, keep_gray,
                                 progress)

    def _restore(self, images: torch.Tensor, scratch: str, hr: bool, detector: object | None,
                 face_size: int, keep_gray: bool, progress: Progress | None) -> RestoreResult:
        rgb, alpha, gray = _split_channels(images)
        size = tuple(rgb.shape[-2:])
        work = self.working_size(size)
        small = rgb if work == size else pil_resize(rgb, work, "lanczos")
        if scratch == "off":
            out, mask, working, mode = self._quality(small)
        else:
            out, mask, working, mode = self._scratch(small, hr=hr, auto=scratch == "auto",
                                                     progress=progress)
        if small is not rgb:  # max_megapixels: back to the input's size
            del small
            out, mask = pil_resize(out, size, "bicubic").clamp_(0, 1), _resize_mask(mask, size)
        found: list[list] = [[] for _ in range(images.shape[0])]
        if detector is not None:
            from .faces import restore_faces
            model = self.store.get("face_512" if face_size == 512 else "face_256")
            out, found = restore_faces(out, detector, model, face_size=face_size)
        result = _merge_channels(out, alpha, gray and keep_gray)
        return RestoreResult(result, mask, mode, working, found)

    # -- stage 1 variants -------------------------------------------------------------------
    def _quality(self, rgb: torch.Tensor):
        work_in = pil_resize(rgb, quality_working_size(*rgb.shape[-2:]), "bilinear")
        tile = self._tile(work_in)
        latent = encode_old(work_in, self.store.get("vae_a"), tile=tile)
        clean = map_latent(latent, self.store.get("mapping_quality"), tile=tile)
        working = self._decode(clean, "vae_b_quality", tile, work_in)
        working["input"] = work_in
        out = pil_resize(working["stretched"], tuple(rgb.shape[-2:]), "bicubic")
        mask = torch.zeros_like(rgb[:, :1])
        return out, mask, working, "quality"

    def detect(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The scratch detection as the restoration runs it, on photos at the working size.

        Args:
            rgb: ``[B, 3, h, w]`` (see :meth:`working_size`).

        Returns:
            ``(image, probability, mask)``: ``rgb`` resized (bicubic) to multiples of 16 as
            the reference's detector wants, and the detector's probability and thresholded
            mask ``[B, 1, h16, w16]`` at that size (before :func:`reference_mask_quirk`).
        """
        h, w = rgb.shape[-2:]
        size = (max(16, round_to_multiple(h, DETECTION_MULTIPLE)),
                max(16, round_to_multiple(w, DETECTION_MULTIPLE)))
        work_in = pil_resize(rgb, size, "bicubic")
        prob = scratch_probability(work_in, self.store.get("scratch_detector"))
        prob = F.interpolate(prob, size, mode="nearest")
        return work_in, prob, (prob >= self.scratch_threshold).float()

    def _scratch(self, rgb: torch.Tensor, *, hr: bool, auto: bool,
                 progress: Progress | None = None):
        h, w = rgb.shape[-2:]
        work_in, _, mask = self.detect(rgb)
        size = tuple(work_in.shape[-2:])
        if auto and float(mask.mean()) < self.auto_min_coverage:
            out, _, working, mode = self._quality(rgb)
            working["mask"] = mask
            return out, _resize_mask(mask, (h, w)), working, mode
        mask = reference_mask_quirk(mask)
        net_mask = dilate_mask(mask, HR_MASK_DILATION) if hr else mask
        tile = self._tile(work_in)
        positions = (size[0] // 4) * (size[1] // 4)
        if not hr and positions > SLOW_ATTENTION_POSITIONS and \
                self.store.get("mapping_scratch").device.type == "cpu":
            log.warning("oldphoto: the scratch mapping's attention is exact and global: for a "
                        "%dx%d photo it is about %.0f TFLOP, which takes long on a CPU; the HR "
                        "mode (--hr / hr=True) is the reference's mode for large photos",
                        size[1], size[0], 4 * 512 * positions**2 / 1e12)
        latent = encode_old(work_in, self.store.get("vae_a"), mask=net_mask, tile=tile)
        clean = map_latent(latent, self.store.get("mapping_hr" if hr else "mapping_scratch"),
                           mask=net_mask, tile=tile, progress=progress)
        working = self._decode(clean, "vae_b_scratch", tile, work_in, mask)
        working.update(input=work_in, mask=mask)
        out = pil_resize(working["stretched"], (h, w), "bicubic")
        return out, _resize_mask(mask, (h, w)), working, "hr" if hr else "scratch"

    def _decode(self, clean, role: str, tile: bool, source: torch.Tensor,
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Decode at the working size, then set the tone (``source``: the network's input at
        that size; ``mask``: its scratches, which lend no tone)."""
        plain = decode_clean(clean, self.store.get(role), tone="none", restore_size=False,
                             tile=tile)
        if self.tone == "none":  # decode_clean clamped already: no copy
            return {"restored": plain, "stretched": plain}
        return {"restored": plain, "stretched": apply_tone(plain, self.tone, source, mask)}


def reference_mask_quirk(mask: torch.Tensor) -> torch.Tensor:
    """The reference's detection.py saves the mask with ``save_image(normalize=True)``, so an
    all-ones mask is written (and read back by test.py) as all zeros; per batch item."""
    return torch.where(mask.flatten(1).min(1).values.view(-1, 1, 1, 1) >= 1,
                       torch.zeros_like(mask), mask)


def _mode_name(scratch: str, hr: bool) -> str:
    if scratch == "off":
        return "quality"
    if hr:
        return "hr" if scratch == "on" else "auto_hr"
    return "scratch" if scratch == "on" else "auto"


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(mask.shape[-2:]) == size:
        return mask
    return F.interpolate(mask, size, mode="nearest")


def _split_channels(images: torch.Tensor):
    c = images.shape[1]
    if c == 1:
        return images.expand(-1, 3, -1, -1), None, True
    if c == 4:
        return images[:, :3], images[:, 3:], False
    return images, None, False


def _merge_channels(rgb: torch.Tensor, alpha: torch.Tensor | None, gray: bool) -> torch.Tensor:
    """The output's channels, clamped to 0..1 without a full-size copy where none is needed
    (a 144 MP result is 1.7 GB per float copy)."""
    if not gray and alpha is None:
        lo, hi = torch.aminmax(rgb)
        return rgb if lo >= 0 and hi <= 1 else rgb.clamp(0, 1)
    out = luma(rgb) if gray else rgb
    if alpha is not None:
        out = torch.cat([out, alpha.to(out)], dim=1)
    return out.clamp_(0, 1)  # a new tensor (luma or cat): clamped in place
