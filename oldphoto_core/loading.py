"""Safe checkpoint reading, canonicalisation, recognition and strict loading.

Nothing here unpickles arbitrary objects: ``.pth``/``.pt`` files go through
``torch.load(weights_only=True)`` (tensors and plain containers only) and ``.safetensors``
through safetensors. The file's content, not its name or extension, decides the reader, so a
renamed or mislabelled file still gets a precise message.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, UnsupportedModelError
from .registry import ARCHITECTURES, ArchSpec, detect_architecture, expected_shapes

__all__ = ["ModelDescriptor", "read_state_dict", "canonicalize_state_dict", "load_model",
           "peek_state_dict",
           "model_from_state_dict", "save_safetensors", "METADATA_ARCH_KEY"]

METADATA_ARCH_KEY = "oldphoto.arch"
_WRAPPER_KEYS = ("model_state", "state_dict", "model", "params_ema", "params", "net")
_SHOW = 5  # how many keys a message lists


@dataclass
class ModelDescriptor:
    """A loaded network plus what callers need to know to use it.

    Attributes:
        model: the ``nn.Module`` in eval mode, no gradients.
        arch: the recognised :class:`~oldphoto_core.registry.ArchSpec`.
        source: the file it came from (``None`` when built from a state dict in memory).
        metadata: safetensors metadata, if any.
    """

    model: nn.Module
    arch: ArchSpec
    source: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.arch.kind

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> ModelDescriptor:
        """Move the model in place; returns ``self`` for chaining."""
        self.model.to(device=device, dtype=dtype)
        return self

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (f"ModelDescriptor({self.arch.id}, {n / 1e6:.1f} M params, "
                f"source={self.source!r})")


def _sniff(path: Path) -> tuple[str, bytes]:
    """The format by content, and the first bytes: ``'zip'`` (torch.save), ``'pickle'`` (legacy
    torch.save), ``'safetensors'`` or ``'?'``."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such file") from exc
    except OSError as exc:  # permission denied, an I/O error
        raise CheckpointError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    if not head:
        raise CheckpointError(f"{path}: the file is empty; expected a checkpoint "
                              "(.pth/.pt written by torch.save, or .safetensors)")
    if head[:4] == b"PK\x03\x04":
        return "zip", head
    if head[:1] == b"\x80":
        return "pickle", head
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors", head
    return "?", head


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor],
                                                             dict[str, str]]:
    """Read a checkpoint file safely; returns ``(raw_object_as_dict, safetensors_metadata)``.

    The reader is chosen by the file's first bytes, never by its name.

    Raises:
        CheckpointError: missing, empty, truncated, not a checkpoint, or holding pickled code;
            whatever the underlying library raised, with the file named.
    """
    p = Path(path)
    fmt, head = _sniff(p)
    if fmt == "safetensors":
        return _read_safetensors(p)
    if fmt in ("zip", "pickle"):
        return _read_torch(p), {}
    raise CheckpointError(
        f"{p}: not a checkpoint: expected a torch.save file (.pth/.pt, zip or pickle) or a "
        f".safetensors file, found {p.stat().st_size} bytes starting with {head!r}")


def _read_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as exc:  # safetensors raises its own error type, or OSError
        raise CheckpointError(f"{p}: cannot read as safetensors (truncated or corrupt?): "
                              f"{exc}") from exc


def _read_torch(p: Path, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a file whose content is a torch.save file.

    torch.load picks safetensors for a *path* ending in ``.safetensors``, whatever the file
    holds; we have already chosen the reader by content, so torch.load gets an open file (a
    path only to memory-map, and never a ``.safetensors`` name).
    """
    mmap = mmap and p.suffix.lower() != ".safetensors"
    try:
        if mmap:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        else:
            with p.open("rb") as f:
                obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p}: refused to load: the file contains Python objects other than tensors and "
            f"plain containers, which could run code when unpickled. Only weights are accepted "
            f"(torch.load(weights_only=True)). Details: {str(exc).splitlines()[0]}") from exc
    except MemoryError as exc:
        raise CheckpointError(f"{p}: not enough memory to read this checkpoint") from exc
    except Exception as exc:  # RuntimeError, EOFError, BadZipFile, OSError ... and the rest
        raise CheckpointError(f"{p}: cannot read as a torch.save checkpoint "
                              f"(truncated or corrupt?): {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: expected a dict of tensors (a state dict), found a "
                              f"{type(obj).__name__}")
    return dict(obj)


def canonicalize_state_dict(obj: Mapping[str, object], *,
                            source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Unwrap ``model_state``/``state_dict`` containers and strip ``module.`` prefixes.

    Raises:
        CheckpointError: when what remains is not a flat ``str -> Tensor`` mapping.
    """
    cur: Mapping[str, object] = obj
    for _ in range(3):  # wrappers may nest, e.g. {'state_dict': {'model_state': ...}}
        inner = next((cur[k] for k in _WRAPPER_KEYS
                      if k in cur and isinstance(cur[k], Mapping)), None)
        if inner is None:
            break
        cur = inner
    out: dict[str, torch.Tensor] = {}
    for key, value in cur.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: expected a state dict of tensors, but entry "
                                  f"{key!r} is a {type(value).__name__}")
        k = str(key)
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = value
    if not out:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors")
    return out


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOW else "")


def _nearest_candidates(sd: Mapping[str, torch.Tensor]) -> str:
    scores = []
    for spec in ARCHITECTURES:
        exp = expected_shapes(spec)
        overlap = sum(1 for k in exp if k in sd) / len(exp)
        missing = [k for k in exp if k not in sd]
        scores.append((overlap, spec, missing))
    scores.sort(key=lambda t: -t[0])
    lines = [f"  - {spec.title} ({spec.published_as}): {overlap:.0%} of its keys present; "
             f"missing {_describe_keys(missing)}" for overlap, spec, missing in scores[:2]]
    return "\n".join(lines)


def _mismatches(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> list[str]:
    exp = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"missing {k} {list(s)}" for k, s in exp.items() if k not in sd]
    problems += [f"unexpected {k}" for k in sd if k not in exp]
    problems += [f"{k}: found shape {list(sd[k].shape)}, expected {list(s)}"
                 for k, s in exp.items() if k in sd and tuple(sd[k].shape) != s]
    return problems


def model_from_state_dict(sd: Mapping[str, torch.Tensor], *, source: str = "<state dict>",
                          expect: str | None = None, device: torch.device | str = "cpu",
                          dtype: torch.dtype = torch.float32) -> ModelDescriptor:
    """Recognise, build and strictly load a network from a canonical state dict.

    Args:
        sd: canonical state dict (see :func:`canonicalize_state_dict`).
        source: shown in error messages (usually the file path).
        expect: a kind from :data:`~oldphoto_core.registry.KINDS` or an architecture id; a
            different network raises.
        device, dtype: where the weights end up (float parameters only are cast).

    Raises:
        UnsupportedModelError: no known network matches.
        CheckpointError: wrong kind, or keys/shapes do not match the recognised network.
    """
    spec = detect_architecture(sd)
    if spec is None:
        raise UnsupportedModelError(
            f"{source}: not a network oldphoto knows. Found keys: "
            f"{_describe_keys(list(sd))}.\nClosest known networks:\n{_nearest_candidates(sd)}")
    if expect is not None and expect not in (spec.kind, spec.id):
        raise CheckpointError(f"{source}: expected a {expect} checkpoint, but this file holds "
                              f"a {spec.title} ({spec.published_as})")
    try:
        with torch.device("meta"):
            model = spec.build(sd)
    except Exception as exc:  # shapes that look like the network but cannot build it
        raise CheckpointError(f"{source}: recognised as {spec.title} ({spec.published_as}) but "
                              f"its shapes do not describe one: {type(exc).__name__}: {exc}"
                              ) from exc
    problems = _mismatches(model, sd)
    if problems:
        raise CheckpointError(
            f"{source}: recognised as {spec.title} ({spec.published_as}) but the weights do "
            f"not fit it ({len(problems)} problems): " + "; ".join(problems[:_SHOW]))
    # Hosts such as ComfyUI call us under torch.inference_mode(); weights made there would be
    # inference tensors for good (no version counter, no autograd ever), so build them normal.
    try:
        with torch.inference_mode(False):
            tensors = {k: _owned(v, device, dtype) for k, v in sd.items()}
            model.load_state_dict(tensors, strict=True, assign=True)
            model.eval().requires_grad_(False)
    except torch.OutOfMemoryError as exc:
        raise CheckpointError(f"{source}: not enough memory on {device} for "
                              f"{spec.title}") from exc
    except (RuntimeError, MemoryError) as exc:
        raise CheckpointError(f"{source}: cannot load the weights of {spec.title} onto "
                              f"{device}: {type(exc).__name__}: {exc}") from exc
    return ModelDescriptor(model=model, arch=spec, source=source)


def _owned(t: torch.Tensor, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    t = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
    return t.clone() if t.is_inference() else t.contiguous()


def load_model(path: str | os.PathLike[str], *, expect: str | None = None,
               device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> ModelDescriptor:
    """Load any published (or converted) checkpoint, recognising the network from its keys.

    Example:
        >>> path = "mapping_scratch/latest_net_mapping_net.pth"
        >>> load_model(path).arch.id  # doctest: +SKIP
        'mapping_scratch'
    """
    raw, meta = read_state_dict(path)
    sd = canonicalize_state_dict(raw, source=str(path))
    desc = model_from_state_dict(sd, source=str(path), expect=expect, device=device,
                                 dtype=dtype)
    desc.metadata = meta
    return desc


def save_safetensors(sd: Mapping[str, torch.Tensor], path: str | os.PathLike[str], *,
                     arch_id: str, source: str | None = None,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write a canonical state dict as safetensors, naming the network in the metadata.

    ``source`` (e.g. ``"VAE_A_quality/latest_net_G.pth"``) is kept in the metadata because the
    three published VAEs have identical keys: only where a file came from tells their roles.
    ``metadata``: further string entries (training facts, a role); the network id and format
    always win over same-named entries.
    """
    from safetensors.torch import save_file
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({METADATA_ARCH_KEY: arch_id, "format": "pt"})
    if source:
        meta["oldphoto.source"] = source
    save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(path),
              metadata=meta)


def peek_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor],
                                                             dict[str, str]]:
    """Keys and shapes of a checkpoint without reading its data where the format allows.

    safetensors: header only; zip ``torch.save`` files: memory-mapped (``weights_only``);
    legacy pickles: a full safe load. Returns ``(canonical state dict, metadata)``; tensors may be
    memory-mapped and must be treated as read-only.
    """
    p = Path(path)
    fmt, _ = _sniff(p)
    if fmt == "safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        except Exception as exc:
            raise CheckpointError(f"{p}: cannot read as safetensors: {exc}") from exc
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}, meta
    if fmt == "zip":  # memory-mapped: the data is only read if someone touches it
        return canonicalize_state_dict(_read_torch(p, mmap=True), source=str(p)), {}
    raw, meta = read_state_dict(p)
    return canonicalize_state_dict(raw, source=str(p)), meta
