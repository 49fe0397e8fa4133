"""Where the published checkpoints are, and which file plays which role.

A models folder may be laid out like the published archives
(``Global/checkpoints/restoration/VAE_A_quality/latest_net_G.pth`` ...) or hold flat files under
any names: every candidate file is recognised by its content (keys and shapes). Content cannot
tell the three VAEs apart (identical architecture) nor the 256 and 512 face models (identical
keys), so for those - and only those - the role comes from the path (``VAE_A_quality``,
``VAE_B_quality``, ``VAE_B_scratch``; ``512`` / ``FaceSR`` for the large face model) or from the
metadata that ``oldphoto convert`` writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError, OldPhotoError
from .loading import ModelDescriptor, load_model, peek_state_dict
from .registry import detect_architecture
from .stages.scratch import DEFAULT_THRESHOLD
from .stages.tone import TONES

__all__ = ["Role", "ROLES", "ModelStore", "MissingModelsError", "default_models_dir",
           "required_roles", "scan_models_dir", "BUNDLED_LABEL", "bundled_dir", "bundled_files",
           "bundled_manifest",
           "manifest_files", "manifest_of", "read_manifest", "ModelSetManifest",
           "REFERENCE_SETTINGS", "candidate_dirs",
           "resolve_models", "auto_mode", "quality_reason"]

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


@dataclass(frozen=True)
class Role:
    """One published checkpoint: the network it holds and where the archives put it."""

    name: str
    arch: str
    published_path: str
    title: str


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("vae_a", "vae", "Global/checkpoints/restoration/VAE_A_quality/latest_net_G.pth",
         "VAE_A_quality (old-photo encoder)"),
    Role("vae_b_quality", "vae", "Global/checkpoints/restoration/VAE_B_quality/latest_net_G.pth",
         "VAE_B_quality (clean-photo decoder, quality mode)"),
    Role("vae_b_scratch", "vae", "Global/checkpoints/restoration/VAE_B_scratch/latest_net_G.pth",
         "VAE_B_scratch (clean-photo decoder, scratch modes)"),
    Role("mapping_quality", "mapping_quality",
         "Global/checkpoints/restoration/mapping_quality/latest_net_mapping_net.pth",
         "mapping_quality"),
    Role("mapping_scratch", "mapping_scratch",
         "Global/checkpoints/restoration/mapping_scratch/latest_net_mapping_net.pth",
         "mapping_scratch"),
    Role("mapping_hr", "mapping_patch_attention",
         "Global/checkpoints/restoration/mapping_Patch_Attention/latest_net_mapping_net.pth",
         "mapping_Patch_Attention (HR)"),
    Role("scratch_detector", "scratch_unet", "Global/checkpoints/detection/FT_Epoch_latest.pt",
         "scratch detector FT_Epoch_latest"),
    Role("face_256", "face_spade",
         "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth",
         "face enhancer Setting_9_epoch_100 (256 px)"),
    Role("face_512", "face_spade", "Face_Enhancement/checkpoints/FaceSR_512/latest_net_G.pth",
         "face enhancer FaceSR_512 (512 px)"),
)}


def covered_modes(store: ModelStore) -> str:
    """The restorations a store's files cover, in words ("the quality restoration" ...)."""
    names = [name for name, mode in (("quality", "quality"), ("scratch", "scratch"),
                                     ("HR", "hr")) if not store.missing(required_roles(mode))]
    return ("the " + " and ".join(names) + " restoration") if names else "no restoration"


def auto_mode(store: ModelStore, hr: bool = False) -> str:
    """What ``scratch="auto"`` runs with ``store``: ``"auto"`` (detect, then repair or not),
    or ``"quality"`` when the store is a declared model set that has the quality networks and
    either lacks the scratch ones or says its scratch path does not help (``auto_scratch``)."""
    scratch_roles = ["scratch_detector", "mapping_hr" if hr else "mapping_scratch"]
    if store.declared and not store.missing(required_roles("quality")) \
            and (store.missing(scratch_roles) or not store.auto_scratch):
        return "quality"
    return "auto"


def quality_reason(store: ModelStore) -> str:
    """Why :func:`auto_mode` chose the quality path for ``store``, for a log line."""
    if store.auto_scratch:
        return "the set has no scratch networks"
    return "the set's card measured its scratch path no better than its quality path"


def required_roles(mode: str, *, faces: bool = False, face_size: int = 256) -> list[str]:
    """Roles a restoration mode needs: ``quality``, ``scratch``, ``hr``, ``auto``, ``auto_hr``."""
    table = {
        "quality": ["vae_a", "mapping_quality", "vae_b_quality"],
        "scratch": ["scratch_detector", "vae_a", "mapping_scratch", "vae_b_scratch"],
        "hr": ["scratch_detector", "vae_a", "mapping_hr", "vae_b_scratch"],
        "auto": ["scratch_detector", "vae_a", "mapping_quality", "vae_b_quality",
                 "mapping_scratch", "vae_b_scratch"],
        "auto_hr": ["scratch_detector", "vae_a", "mapping_quality", "vae_b_quality",
                    "mapping_hr", "vae_b_scratch"],
    }
    if mode not in table:
        raise OldPhotoError(f"unknown mode {mode!r}; expected one of {sorted(table)}")
    roles = list(table[mode])
    if faces:
        roles.append("face_512" if face_size == 512 else "face_256")
    return roles


def default_models_dir() -> Path:
    """``$OLDPHOTO_MODELS`` if set, else ``./models``."""
    return Path(os.environ.get("OLDPHOTO_MODELS", "models"))


#: How the bundled set is named in log lines and loader lists.
BUNDLED_LABEL = "oldphoto default (bundled)"
BUNDLED_MANIFEST = "manifest.json"


def bundled_dir() -> Path:
    """The folder of the default model set shipped inside this package (package data)."""
    return Path(__file__).resolve().parent / "weights" / "default"


@dataclass(frozen=True)
class ModelSetManifest:
    """A model set's ``manifest.json`` (written by ``python -m training recipe``).

    Attributes:
        files: ``role -> file``. The roles are explicit, not recognised: a set's one
            clean-photo VAE serves both ``vae_b_quality`` and ``vae_b_scratch``, which no file
            name could say.
        tone: how restorations with this set set their output tone
            (:mod:`oldphoto_core.stages.tone`): ``"reference"`` unless the set says otherwise.
        scratch_threshold: the probability at which this set's detector calls a pixel a
            scratch (None: the reference's 0.4). A detector trained with class-balanced
            weights, as the paper's, reads high everywhere; its recipe picks the threshold of
            best F1 on its training photos.
        auto_scratch: whether ``scratch="auto"`` may take this set's scratch path (False: its
            card measured it no better than the quality path; ``scratch="on"`` still runs it).
    """

    files: dict[str, Path]
    tone: str = "reference"
    scratch_threshold: float | None = None
    auto_scratch: bool = True

    @property
    def detector_threshold(self) -> float:
        """The threshold its detector runs at: the calibrated one, else the reference's 0.4."""
        return DEFAULT_THRESHOLD if self.scratch_threshold is None else self.scratch_threshold


#: The settings of a folder without a manifest (the published checkpoints): the reference's.
REFERENCE_SETTINGS = ModelSetManifest({})


def read_manifest(folder: Path) -> ModelSetManifest | None:
    """``folder/manifest.json``, or ``None`` when the folder has none.

    Raises:
        CheckpointError: an unreadable manifest, one naming unknown roles or an unknown tone,
            a threshold outside (0, 1) or an ``auto_scratch`` that is not true or false.
    """
    manifest = folder / BUNDLED_MANIFEST
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
        files = {str(role): folder / str(name) for role, name in data["roles"].items()}
        tone = str(data.get("tone", "reference"))
        threshold = data.get("scratch_threshold")
        auto_scratch = data.get("auto_scratch", True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{manifest}: not a model-set manifest ({exc})") from exc
    unknown = sorted(set(files) - set(ROLES))
    if unknown:
        raise CheckpointError(f"{manifest}: unknown roles {unknown}; known: {sorted(ROLES)}")
    if tone not in TONES:
        raise CheckpointError(f"{manifest}: unknown tone {tone!r}; known: {list(TONES)}")
    if threshold is not None and not (isinstance(threshold, (int, float))
                                      and not isinstance(threshold, bool)
                                      and 0.0 < threshold < 1.0):
        raise CheckpointError(f"{manifest}: scratch_threshold must be a number in (0, 1), "
                              f"found {threshold!r}")
    if not isinstance(auto_scratch, bool):
        raise CheckpointError(f"{manifest}: auto_scratch must be true or false, found "
                              f"{auto_scratch!r}")
    return ModelSetManifest(files, tone, None if threshold is None else float(threshold),
                            auto_scratch)


def manifest_of(path: str | os.PathLike[str]) -> ModelSetManifest | None:
    """The manifest of the model set that lists the file ``path`` (``manifest.json`` beside it,
    naming it), or ``None`` (a published checkpoint, a loose file).

    A host that loads a set's files one by one (ComfyUI's loaders) reads the set's settings
    here, so that a file restores the way its set asks wherever it is loaded.

    Raises:
        CheckpointError: an unreadable manifest beside the file (:func:`read_manifest`).
    """
    path = Path(path)
    manifest = read_manifest(path.parent)
    if manifest is None:
        return None
    target = path.resolve()
    return manifest if any(f.resolve() == target for f in manifest.files.values()) else None


def manifest_files(folder: Path) -> dict[str, Path] | None:
    """``role -> file`` of :func:`read_manifest`, ``None`` without a manifest."""
    manifest = read_manifest(folder)
    return None if manifest is None else manifest.files


def bundled_manifest() -> ModelSetManifest | None:
    """The bundled default set's manifest; ``None`` when this installation ships none (e.g. a
    source tree before the set was trained)."""
    return read_manifest(bundled_dir())


def bundled_files() -> dict[str, Path]:
    """``role -> file`` of the bundled default set; empty when this installation ships none."""
    manifest = bundled_manifest()
    return manifest.files if manifest else {}


def candidate_dirs(extra: tuple[tuple[str, str | os.PathLike[str]], ...] = ()
                   ) -> list[tuple[str, Path]]:
    """Where published (or user-trained) checkpoints are looked for, in order, as
    ``(how it was named, folder)``: ``$OLDPHOTO_MODELS`` when set, ``./models``, then
    ``extra`` (a host's folders, e.g. ComfyUI's ``models/oldphoto``)."""
    dirs: list[tuple[str, Path]] = []
    if os.environ.get("OLDPHOTO_MODELS"):
        dirs.append(("$OLDPHOTO_MODELS", Path(os.environ["OLDPHOTO_MODELS"])))
    dirs.append(("./models", Path("models")))
    dirs += [(name, Path(p)) for name, p in extra]
    return dirs


def resolve_models(explicit: str | os.PathLike[str] | None = None, *,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   extra: tuple[tuple[str, str | os.PathLike[str]], ...] = ()) -> ModelStore:
    """The model set to use, as a store whose :attr:`ModelStore.label` says which it is.

    * ``explicit`` (``--models DIR``): that folder and nothing else; missing files stay an
      error listing them (a user who names a folder means it).
    * else the first of :func:`candidate_dirs` holding at least one recognised checkpoint:
      the published weights (or the user's own) win whenever they are there;
    * else the bundled default set, when this installation ships one;
    * else the first candidate folder (empty), so that :meth:`ModelStore.require` lists the
      files to fetch and where they go.

    A set is never mixed with another: the VAEs and mappings of two sets speak different
    latent languages.
    """
    if explicit is not None:
        return ModelStore(explicit, device=device, dtype=dtype)
    first: ModelStore | None = None
    for how, folder in candidate_dirs(extra):
        store = ModelStore(folder, device=device, dtype=dtype)
        store.label = f"checkpoints in {folder} ({how})"
        if store.files:
            return store
        first = first or store
    if bundled_files():
        store = ModelStore(bundled_dir(), device=device, dtype=dtype)
        store.label = BUNDLED_LABEL
        return store
    assert first is not None
    first.notes.append("this installation ships no bundled default models")
    return first


def _role_from_hint(arch: str, hint: str) -> str | None:
    h = hint.lower().replace("-", "_")
    if arch == "vae":
        if "vae_a" in h:
            return "vae_a"
        if "vae_b" in h and "scratch" in h:
            return "vae_b_scratch"
        if "vae_b" in h and "quality" in h:
            return "vae_b_quality"
        return None
    if arch == "face_spade":
        return "face_512" if ("512" in h or "facesr" in h) else "face_256"
    return next((r.name for r in ROLES.values() if r.arch == arch), None)


def scan_models_dir(root: str | os.PathLike[str]) -> tuple[dict[str, Path], list[str]]:
    """Recognise every checkpoint under ``root``.

    Returns:
        ``(role -> file, notes)``; notes explain files that were skipped or ambiguous.
    """
    root = Path(root)
    found: dict[str, Path] = {}
    notes: list[str] = []
    if not root.is_dir():
        return found, notes
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower() in CHECKPOINT_SUFFIXES)
    # published paths first, so that they win over stray copies
    published = {r.published_path for r in ROLES.values()}
    files.sort(key=lambda p: (p.relative_to(root).as_posix() not in published, str(p)))
    for path in files:
        try:
            sd, meta = peek_state_dict(path)
        except CheckpointError as exc:
            notes.append(f"skipped {path}: {exc}")
            continue
        spec = detect_architecture(sd)
        if spec is None:
            notes.append(f"skipped {path}: not a network oldphoto knows")
            continue
        hint = " ".join([path.relative_to(root).as_posix(), meta.get("oldphoto.source", ""),
                         meta.get("oldphoto.role", "")])
        role = _role_from_hint(spec.id, hint)
        if role is None:
            notes.append(f"skipped {path}: a {spec.title}, but its name does not say which "
                         "(rename it after VAE_A_quality, VAE_B_quality or VAE_B_scratch)")
            continue
        if role in found:
            notes.append(f"ignored {path}: {ROLES[role].title} already found at {found[role]}")
            continue
        found[role] = path
        del sd
    return found, notes


class MissingModelsError(OldPhotoError):
    """Checkpoints needed for a mode are not in the models folder."""


class ModelStore:
    """Loads each checkpoint once, on first use, and keeps it.

    Args:
        root: the models folder (published layout or flat files, recognised by content), or
            a model set with a ``manifest.json`` (a recipe's output), read from the manifest.
        device, dtype: where models live while in use.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.root = Path(root) if root is not None else default_models_dir()
        self.device, self.dtype = torch.device(device), dtype
        listed = read_manifest(self.root) if self.root.is_dir() else None
        self.files, self.notes = ((listed.files, []) if listed is not None
                                  else scan_models_dir(self.root))
        self.adopt(listed)
        self._loaded: dict[str, ModelDescriptor] = {}
        #: which set this is, for log lines ("checkpoints in models", BUNDLED_LABEL ...)
        self.label = f"checkpoints in {self.root}"

    @classmethod
    def from_files(cls, files: dict[str, str | os.PathLike[str]], *,
                   device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> ModelStore:
        """A store of explicitly chosen files (``role -> path``), nothing scanned.

        Raises:
            KeyError: an unknown role.
        """
        store = cls.__new__(cls)
        store.root = Path(".")
        store.device, store.dtype = torch.device(device), dtype
        unknown = sorted(set(files) - set(ROLES))
        if unknown:
            raise KeyError(f"unknown roles {unknown}; known: {sorted(ROLES)}")
        store.files = {role: Path(p) for role, p in files.items()}
        store.notes = []
        store._loaded = {}
        store.label = "chosen files"
        store.adopt(None)
        return store

    def adopt(self, manifest: ModelSetManifest | None) -> None:
        """Take a model set's settings from its manifest (None: a folder of published files,
        the reference's settings). Its files are not touched."""
        #: the set's settings (:data:`REFERENCE_SETTINGS` without a manifest)
        self.settings = manifest if manifest is not None else REFERENCE_SETTINGS
        #: a model set with a manifest names its networks: what it lacks it does not offer
        #: (``scratch="auto"`` then runs what it has), unlike a folder of published files
        #: missing some (an error that lists them)
        self.declared = manifest is not None

    @property
    def tone(self) -> str:
        """The output tone this set asks for (:mod:`oldphoto_core.stages.tone`)."""
        return self.settings.tone

    @property
    def scratch_threshold(self) -> float | None:
        """The detector threshold this set calibrated (None: the reference's)."""
        return self.settings.scratch_threshold

    @property
    def auto_scratch(self) -> bool:
        """Whether ``scratch="auto"`` may take this set's scratch path."""
        return self.settings.auto_scratch

    def missing(self, roles: list[str]) -> list[str]:
        return [r for r in roles if r not in self.files]

    def require(self, roles: list[str]) -> None:
        """Raise :class:`MissingModelsError` naming every missing file and where it goes."""
        missing = self.missing(roles)
        if not missing:
            return
        if self.label == BUNDLED_LABEL:
            raise MissingModelsError(
                f"the {BUNDLED_LABEL} model set has no "
                f"{', '.join(ROLES[r].title for r in missing)}: it covers "
                f"{covered_modes(self)} only. For the other modes (scratch repair, --hr, "
                "faces), fetch the published weights with `oldphoto models download` (or put "
                "them in ./models or $OLDPHOTO_MODELS).")
        lines = [f"missing checkpoint files in {self.root.resolve()}:"]
        for r in missing:
            lines.append(f"  - {ROLES[r].title}: put it at "
                         f"{(self.root / ROLES[r].published_path).as_posix()}")
        lines.append(
            "These are the published checkpoints of microsoft/Bringing-Old-Photos-Back-to-Life "
            "(Global/checkpoints.zip and Face_Enhancement/checkpoints.zip, unzipped under the "
            "models folder as above; `oldphoto models download` fetches and installs them). "
            "Point --models or OLDPHOTO_MODELS at another folder if they live elsewhere; flat "
            "files are recognised by content, but VAE files must keep VAE_A_quality / "
            "VAE_B_quality / VAE_B_scratch in their file or folder name.")
        lines += [f"  note: {n}" for n in self.notes]
        raise MissingModelsError("\n".join(lines))

    def get(self, role: str) -> ModelDescriptor:
        """The loaded model of ``role`` (loaded on first use)."""
        if role not in self._loaded:
            self.require([role])
            # one file may serve several roles (the bundled clean VAE): load it once
            same = next((d for r, d in self._loaded.items()
                         if self.files.get(r) == self.files[role]
                         and d.arch.id == ROLES[role].arch), None)
            self._loaded[role] = same or load_model(
                self.files[role], expect=ROLES[role].arch, device=self.device, dtype=self.dtype)
        return self._loaded[role]

    def put(self, role: str, model: ModelDescriptor) -> None:
        """Use an already loaded model for ``role`` (e.g. built from a state dict in memory)."""
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; known: {sorted(ROLES)}")
        if model.arch.id != ROLES[role].arch:
            raise CheckpointError(f"{model.source}: a {model.arch.title} cannot serve as "
                                  f"{ROLES[role].title}")
        self._loaded[role] = model
        self.files.setdefault(role, Path(model.source or f"<{role}>"))

    def __contains__(self, role: str) -> bool:
        return role in self.files
