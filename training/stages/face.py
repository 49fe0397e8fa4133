"""``face``: the SPADE face generator (paper §3.4, eq. 17-18).

Faces are aligned to the restoration's template (detected in ``--data`` photos by
:mod:`oldphoto_core.faces`, once, on rank 0; or given aligned with ``--aligned``), shrunk by a
random factor and damaged by ``degrade`` without structured defects; the generator learns to
give back the clean face. ``L_G = LSGAN(G(x) | x) + w_FM FM (+ w_VGG VGG)`` with a multi-scale
PatchGAN conditioned on the degraded face.
"""

from __future__ import annotations

import torch
from torch import nn

from oldphoto_core.arch import SPADEFaceGenerator
from oldphoto_core.errors import OldPhotoError
from oldphoto_core.faces import make_face_detector

from ..data import FaceSet, PhotoSource, scan_images
from ..data.faces import extract_faces, load_extracted
from ..discriminators import MultiScaleDiscriminator, discriminator_width
from ..distributed import barrier, wrap
from ..errors import DataError, TrainingError
from ..export import Export
from ..gan import adam
from ..nets import init_weights
from ..records import to_unit_rgb
from .base import Stage, perceptual_or_none, photo_source

__all__ = ["FaceStage"]


class FaceStage(Stage):
    """Train the face generator on (degraded, clean) aligned faces."""

    name = "face"

    def __init__(self, cfg, ctx, log) -> None:
        super().__init__(cfg, ctx, log)
        assert cfg.width is not None and cfg.crop is not None
        source = photo_source(cfg, cfg.data, log, "aligned faces") if cfg.aligned \
            else self._detected_faces()
        self.data_size = len(source)
        self.dataset = FaceSet(source, cfg.crop, cfg.face_max_downscale, cfg.seed)
        net: nn.Module = SPADEFaceGenerator(base=cfg.width)
        init_weights(net)
        self.start_from(net, "face_spade")
        if ctx.distributed and ctx.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.generator = net.to(self.device)
        self.model = wrap(self.generator, ctx)
        self.opt = adam(self.generator.parameters(), cfg.lr)
        d = MultiScaleDiscriminator(6, discriminator_width(cfg.width))
        init_weights(d)
        self.critic = self.critic_for(d.to(self.device))
        self.perceptual = perceptual_or_none(cfg, log, self.device)
        self.networks = {"generator": self.generator, "discriminator": d}
        self.optimizers = {"generator": self.opt, "discriminator": self.critic.optimizer}
        if cfg.crop != cfg.face_size:
            log(f"faces aligned for {cfg.face_size} px are trained at {cfg.crop} px (--crop)")

    def _detected_faces(self) -> PhotoSource:
        cfg, log = self.cfg, self.log
        assert cfg.crop is not None
        paths = [e.path for e in scan_images(cfg.data, crop=1, report=log.once).entries]
        out_dir = cfg.out / "faces" / str(cfg.face_size)
        if self.ctx.main:
            try:
                detector = make_face_detector(cfg.face_detector,
                                              insightface_root=cfg.insightface_root)
            except OldPhotoError as exc:
                raise TrainingError(f"face detection: {exc}") from exc
            assert detector is not None
            entries = extract_faces(paths, detector, cfg.face_size, out_dir, report=log)
        barrier(self.ctx)
        if not self.ctx.main:
            found = load_extracted(out_dir, paths, cfg.face_size)
            if found is None:
                raise DataError(f"rank {self.ctx.rank}: the aligned faces of rank 0 are not "
                                f"in {out_dir} (is --out on a filesystem all machines share?)")
            entries = found
        return PhotoSource(entries, crop=cfg.crop, color_augment=cfg.color_augment)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        x, y = batch["degraded"], batch["clean"]
        out = self.model(x)
        total, terms = self.image_gan_terms(out, y, cond=x)
        self.optimise(self.opt, total)
        terms["d_real"], terms["d_fake"] = self.critic.step(y, out, cond=x)
        terms["g_total"] = total
        return {k: v.detach() for k, v in terms.items()}

    def sample(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            out = self.generator(batch["degraded"])
        return [to_unit_rgb(batch["degraded"]), to_unit_rgb(out), to_unit_rgb(batch["clean"])]

    def export(self) -> Export:
        size = self.cfg.face_size
        return Export(self.generator, "face_spade", f"face_{size}", f"face_{size}.safetensors")
