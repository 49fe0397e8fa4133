"""``OldPhotoRestore``: the whole restoration (scratches, global restoration, faces) in one node,
as the reference's ``run.py`` — a wrapper around :class:`oldphoto_core.pipeline.Restorer`.

Models come from a models folder (recognised by content; the published layout works as is) or
from loader nodes connected to the optional inputs, which win over the folder. The networks a
node loads from the folder belong to the node instance (ComfyUI keeps it in its object cache and
drops it on ``/free``), those of loader nodes to their handles: none stays alive through a cache
of ours once ComfyUI has let go of it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from pathlib import Path

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.models import (
    BUNDLED_LABEL,
    ROLES,
    ModelSetManifest,
    ModelStore,
    auto_mode,
    bundled_files,
    bundled_manifest,
    covered_modes,
    quality_reason,
    required_roles,
    scan_models_dir,
)
from oldphoto_core.pipeline import Restorer
from oldphoto_core.runtime.memory import estimate_bytes

from . import comfy_compat as compat
from .convert import image_to_nchw, nchw_to_image, nchw_to_mask
from .detector_loader import insightface_root
from .loaders import load_path_cached
from .runtime import (
    Network,
    Steps,
    check_precision,
    expect_model,
    models_on_device,
    precision_input,
    run_in_chunks,
)
from .types import (
    BOOLEAN,
    CATEGORY,
    FACE_MODEL,
    IMAGE,
    MAPPING,
    MASK,
    SCRATCH_MODEL,
    STRING,
    VAE,
)

log = logging.getLogger("oldphoto")

__all__ = ["ALL_IN_ONE_NODES", "OldPhotoRestore", "folder_choices"]

ALL_FOLDERS = "oldphoto"
SCRATCH_CHOICES = ("auto", "on", "off")
FACE_CHOICES = ("off", "auto", "insightface", "dlib")
FACE_SIZES = ("auto", "256", "512")

# optional input -> (ComfyUI type, model kind, tooltip)
_MODEL_INPUTS = {
    "scratch_model": (SCRATCH_MODEL, "scratch_detector", "Scratch detector (FT_Epoch_latest.pt)."),
    "vae_a": (VAE, "vae", "VAE_A_quality (encodes the old photo)."),
    "vae_b_quality": (VAE, "vae", "VAE_B_quality (decodes after the quality mapping)."),
    "vae_b_scratch": (VAE, "vae", "VAE_B_scratch (decodes after the scratch/HR mapping)."),
    "mapping_quality": (MAPPING, "mapping", "mapping_quality."),
    "mapping_scratch": (MAPPING, "mapping", "mapping_scratch (partial non-local)."),
    "mapping_hr": (MAPPING, "mapping", "mapping_Patch_Attention (used with hr)."),
    "face_model": (FACE_MODEL, "face_enhancer", "Face enhancer (its face_size is used when "
                                                "face_size is auto)."),
}
# role -> the optional input that provides it
_ROLE_INPUT = {"scratch_detector": "scratch_model", "vae_a": "vae_a",
               "vae_b_quality": "vae_b_quality", "vae_b_scratch": "vae_b_scratch",
               "mapping_quality": "mapping_quality", "mapping_scratch": "mapping_scratch",
               "mapping_hr": "mapping_hr", "face_256": "face_model", "face_512": "face_model"}

_lock = threading.RLock()
_scans: dict[tuple, dict[str, Path]] = {}
_restorers: dict[str | None, Restorer] = {}


def folder_choices() -> list[str]:
    """``oldphoto`` (every registered oldphoto folder), ``oldphoto/<sub-folder>``, and the
    bundled default set when this installation ships one."""
    subs: set[str] = set()
    for root in compat.model_folders():
        if os.path.isdir(root):
            subs.update(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                        and not d.startswith("."))
    bundled = [BUNDLED_LABEL] if bundled_files() else []
    return [ALL_FOLDERS] + [f"{ALL_FOLDERS}/{d}" for d in sorted(subs)] + bundled


def _roots(choice: str) -> list[str]:
    roots = compat.model_folders()
    if choice == ALL_FOLDERS:
        return roots
    sub = choice.split("/", 1)[1] if choice.startswith(ALL_FOLDERS + "/") else None
    if not sub or sub.startswith(".") or "/" in sub or "\\" in sub:
        raise InputError(f"Restore Old Photo: models_folder must be one of {folder_choices()}, "
                         f"got {choice!r}")
    return [os.path.join(r, sub) for r in roots if os.path.isdir(os.path.join(r, sub))]


def _signature(roots: list[str]) -> tuple:
    sig = []
    for root in roots:
        for dirpath, _, files in os.walk(root, followlinks=True):
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                sig.append((p, st.st_mtime_ns, st.st_size))
    return tuple(sorted(sig))


def _files(choice: str) -> tuple[dict[str, Path], str, ModelSetManifest | None]:
    """``(role -> file, which set, its manifest)`` for a models folder choice (the manifest
    carries the set's settings: output tone, detector threshold, auto policy).

    As :func:`oldphoto_core.models.resolve_models`: the folders' checkpoints when they hold any
    (then strictly: a missing file is an error, never filled in from another set), else the
    bundled default set; ``oldphoto default (bundled)`` chooses the bundled set outright.
    """
    if choice == BUNDLED_LABEL or (not (found := _scan(choice)) and bundled_files()):
        manifest = bundled_manifest()
        return (manifest.files if manifest else {}), BUNDLED_LABEL, manifest
    return found, f"checkpoints in {choice}", None


def _scan(choice: str) -> dict[str, Path]:
    """role -> file for a models folder choice (cached until a file changes)."""
    roots = _roots(choice)
    key = (tuple(roots), _signature(roots))
    with _lock:
        if key in _scans:
            return _scans[key]
    found: dict[str, Path] = {}
    for root in roots:
        files, notes = scan_models_dir(root)
        for role, path in files.items():
            found.setdefault(role, path)
        for note in notes:
            log.debug("oldphoto: %s", note)
    with _lock:
        _scans.clear()  # one folder state at a time: stale scans are never needed again
        _scans[key] = found
    return found


def _mode(scratch: str, hr: bool) -> str:
    if scratch == "off":
        return "quality"
    if hr:
        return "hr" if scratch == "on" else "auto_hr"
    return "scratch" if scratch == "on" else "auto"


def _restorer(root: str | None) -> Restorer:
    """One Restorer per insightface folder, so face detectors are created once."""
    with _lock:
        if root not in _restorers:
            _restorers[root] = Restorer(ModelStore(os.devnull), insightface_root=root)
        return _restorers[root]


class OldPhotoRestore:
    DISPLAY_NAME = "Restore Old Photo (all-in-one)"
    CATEGORY = CATEGORY
    FUNCTION = "restore"
    RETURN_TYPES = (IMAGE, MASK, STRING)
    RETURN_NAMES = ("image", "scratch_mask", "info")
    OUTPUT_TOOLTIPS = (
        "The restored photos, same size as the input.",
        "The detected scratch mask (empty where the quality path ran).",
        "Per image, as JSON: which path ran (quality, scratch, hr) and how many faces were "
        "enhanced.")
    DESCRIPTION = ("Bringing Old Photos Back to Life in one node: scratch detection, global "
                   "restoration by latent translation and face enhancement, as the reference's "
                   "run.py. Checkpoints come from models/oldphoto or from loader nodes.")

    @classmethod
    def INPUT_TYPES(cls):
        optional = {name: (typ, {"tooltip": f"Optional: overrides the models folder. {tip}"})
                    for name, (typ, _, tip) in _MODEL_INPUTS.items()}
        return {
            "required": {
                "image": (IMAGE, {"tooltip": "The old photos (any size, any batch)."}),
                "scratch": (SCRATCH_CHOICES, {
                    "default": "auto",
                    "tooltip": "'on': repair scratches (scratch detector + mapping_scratch); "
                               "'off': quality path only (mapping_quality); 'auto': detect and "
                               "repair when scratches are found."}),
                "hr": (BOOLEAN, {
                    "default": False,
                    "tooltip": "High-resolution scratch repair with the patch-attention "
                               "mapping (mapping_Patch_Attention), as the reference's --HR."}),
                "faces": (FACE_CHOICES, {
                    "default": "off",
                    "tooltip": "Enhance faces afterwards with this detector backend ('auto': "
                               "insightface when models/insightface has det_10g.onnx, else "
                               "dlib), or 'off'."}),
                "face_size": (FACE_SIZES, {
                    "default": "auto",
                    "tooltip": "256 (Setting_9_epoch_100) or 512 (FaceSR_512); 'auto': the "
                               "connected face model's size, else 512 with hr and 256 "
                               "without, as the reference."}),
                "models_folder": (folder_choices(), {
                    "default": ALL_FOLDERS,
                    "tooltip": "Where to find the checkpoints: every models/oldphoto folder, or "
                               "one sub-folder. Files are recognised by content; the VAEs by "
                               "their VAE_A_quality / VAE_B_quality / VAE_B_scratch names. "
                               "When the folder holds none, the small bundled default models "
                               "are used ('oldphoto default (bundled)' picks them outright); "
                               "the info output says which set ran."}),
            },
            "optional": {**optional, "precision": precision_input()},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, scratch="auto", faces="off", face_size="auto",
                        models_folder=ALL_FOLDERS):
        if scratch not in SCRATCH_CHOICES:
            return f"scratch must be one of {SCRATCH_CHOICES}, got {scratch!r}"
        if faces not in FACE_CHOICES:
            return f"faces must be one of {FACE_CHOICES}, got {faces!r}"
        if face_size not in FACE_SIZES:
            return f"face_size must be one of {FACE_SIZES}, got {face_size!r}"
        choices = folder_choices()
        if models_folder not in choices:
            return f"models_folder must be one of {choices}, got {models_folder!r}"
        return True

    def restore(self, image, scratch="auto", hr=False, faces="off", face_size="auto",
                models_folder=ALL_FOLDERS, precision="exact", **models):
        node = self.DISPLAY_NAME
        precision = check_precision(precision, node=node)
        given = {name: expect_model(value, _MODEL_INPUTS[name][1], node=node, input_name=name)
                 for name, value in models.items() if value is not None}
        if scratch not in SCRATCH_CHOICES or faces not in FACE_CHOICES or \
                face_size not in FACE_SIZES:
            raise InputError(f"{node}: invalid option (scratch={scratch!r}, faces={faces!r}, "
                             f"face_size={face_size!r})")
        size = None if face_size == "auto" else int(face_size)
        face_model = given.get("face_model")
        if faces != "off" and face_model is not None:
            if size is not None and size != face_model.face_size:
                raise InputError(f"{node}: face_size is {size} but the connected face model "
                                 f"runs at {face_model.face_size} px")
            size = face_model.face_size
        size = size or (512 if hr else 256)
        scratch = self._scratch_mode(scratch, bool(hr), given, models_folder)
        mode = _mode(scratch, bool(hr))
        roles = required_roles(mode, faces=faces != "off", face_size=size)
        store, nets = self._store(roles, given, models_folder, scratch, bool(hr), faces)
        # this node instance owns the networks it loaded from the folder (ComfyUI's object
        # cache holds the instance; /free drops it, and with it these networks)
        self._networks = [n for role, n in nets.items() if _ROLE_INPUT[role] not in given]
        # a copy per run: the cached Restorer (its face detectors) never holds this run's
        # models or settings
        restorer = copy.copy(_restorer(insightface_root("buffalo_l") if faces != "off"
                                       else None))
        restorer.store, restorer.precision, restorer.tone = store, precision, store.tone

        images = image_to_nchw(image)
        b, _, h, w = images.shape
        steps = Steps(b)
        per_item = estimate_bytes(mode, h * w, input_pixels=h * w, faces=faces != "off",
                                  tiled=h * w >= restorer.tile_from_megapixels * 1e6)
        here = compat.intermediate_device()

        def run(start: int, stop: int, tile: bool) -> tuple:
            restorer.tile = "on" if tile else "auto"
            res = restorer.restore(images[start:stop], scratch=scratch, hr=bool(hr),
                                   faces=faces, face_size=size, progress=steps.within)
            n_faces = [len(f) for f in res.faces] or [0] * (stop - start)
            return (res.images.to(here), res.masks.to(here),
                    [{"mode": res.mode, "faces": k, "models": store.label} for k in n_faces])

        with models_on_device(*nets.values(), memory_required=per_item,
                              precision=precision) as device:
            # scratch=auto chooses the path per photo, as the reference: one at a time
            parts = run_in_chunks(b, run, steps=steps, device=device, per_item=per_item,
                                  max_chunk=1 if scratch == "auto" else None, node=node)
        return (nchw_to_image(torch.cat([p[0] for p in parts])),
                nchw_to_mask(torch.cat([p[1] for p in parts])),
                json.dumps([item for p in parts for item in p[2]]))

    @staticmethod
    def _scratch_mode(scratch: str, hr: bool, given: dict, choice: str) -> str:
        """As :meth:`oldphoto_core.Restorer.scratch_mode`: ``"auto"`` with the bundled set
        runs the quality path when the set says so (unless a loader brings the scratch
        networks)."""
        needed = {"scratch_detector", "mapping_hr" if hr else "mapping_scratch"}
        if scratch != "auto" or any(_ROLE_INPUT[r] in given for r in needed):
            return scratch
        files, label, manifest = _files(choice)
        store = ModelStore.from_files(files)
        store.adopt(manifest)  # a set that names its networks, and its settings
        if auto_mode(store, hr) == "quality":  # the core's rule (Restorer.scratch_mode)
            log.info("oldphoto: scratch='auto' runs the quality path with %s (%s)", label,
                     quality_reason(store))
            return "off"
        return scratch

    @staticmethod
    def _store(roles: list[str], given: dict, choice: str, scratch: str, hr: bool,
               faces: str) -> tuple[ModelStore, dict[str, Network]]:
        """The run's store (role -> descriptor) and its networks (role -> network)."""
        store = ModelStore(os.devnull)  # an empty store (no folder scan); filled below
        nets: dict[str, Network] = {}
        files = None
        missing = []
        for role in roles:
            handle = given.get(_ROLE_INPUT[role])
            if handle is not None:
                nets[role] = handle.network
                store.put(role, handle.descriptor)
                continue
            if files is None:
                files, store.label, manifest = _files(choice)
                store.adopt(manifest)
                log.info("oldphoto: %s uses %s", OldPhotoRestore.DISPLAY_NAME, store.label)
            if role in files:
                nets[role] = load_path_cached(files[role], ROLES[role].arch)
                store.put(role, nets[role].descriptor)
            else:
                missing.append(role)
        if missing:
            where = (BUNDLED_LABEL if store.label == BUNDLED_LABEL
                     else ", ".join(_roots(choice)) or choice)
            lines = [f"Restore Old Photo: checkpoints missing for scratch={scratch}, hr={hr}, "
                     f"faces={faces} (searched {where}):"]
            lines += [f"  - {ROLES[r].title}: {ROLES[r].published_path} under models/oldphoto, "
                      f"or connect a loader to '{_ROLE_INPUT[r]}'" for r in missing]
            lines.append("Files are recognised by content under any name, except that VAE "
                         "files must keep VAE_A_quality / VAE_B_quality / VAE_B_scratch in "
                         "their file or folder name.")
            if store.label == BUNDLED_LABEL:
                lines.append(f"The {BUNDLED_LABEL} set covers "
                             f"{covered_modes(ModelStore.from_files(files))} only; for the "
                             "other modes put the published checkpoints in models/oldphoto "
                             "(`oldphoto models download --to ComfyUI/models/oldphoto`).")
            raise InputError("\n".join(lines))
        return store, nets


ALL_IN_ONE_NODES = {"OldPhotoRestore": OldPhotoRestore}
