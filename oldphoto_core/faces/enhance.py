"""Face enhancement: the SPADE generator on every aligned face of a batch (paper §3.4).

As the reference's ``test_face.py``: the 8-bit aligned crop goes to [-1, 1]
(``(k / 255 - 0.5) / 0.5``), the generator is conditioned on it (the parsing-map label is
unused), and ``(y + 1) / 2`` clamped to [0, 1] is the enhanced face. All faces of all batch
items run together, in chunks that fit a memory budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..runtime.memory import FACE_CPU_BUDGET_MB
from ..runtime.numerics import network_math
from .types import Face

if TYPE_CHECKING:
    from ..loading import ModelDescriptor

__all__ = ["CropRestorer", "FaceModel", "enhance_crops", "enhance_faces", "faces_per_chunk",
           "restore_crops_with"]

# Peak activation memory of the SPADE generator per face, in values per crop pixel (measured on
# CPU, float32: about 180 MB per 256 px face and 780 MB per 512 px face, with some margin).
_ACTIVATION_VALUES_PER_PIXEL = 750
_CUDA_FREE_FRACTION = 0.5

Progress = Callable[[int, int], None]
#: The face model: a loaded descriptor of kind ``face_enhancer`` or the bare generator.
FaceModel = Union["ModelDescriptor", nn.Module]


def _unwrap(model: FaceModel) -> nn.Module:
    inner = getattr(model, "model", model)  # ModelDescriptor or bare module
    if not isinstance(inner, nn.Module):
        raise InputError(f"enhancer: expected a face model (ModelDescriptor or nn.Module), got "
                         f"{type(model).__name__}")
    kind = getattr(model, "kind", None)
    if kind is not None and kind != "face_enhancer":
        raise InputError(f"enhancer: expected a face_enhancer model, got a {kind} model")
    return inner


def faces_per_chunk(face_size: int, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu",
                    memory_budget_mb: float | None = None) -> int:
    """How many faces of side ``face_size`` run through the generator at once (>= 1).

    Args:
        face_size: crop side S.
        dtype, device: where and how the generator runs.
        memory_budget_mb: activation memory allowed per chunk; ``None``: 2048 MB on CPU, half
            of the free memory on CUDA.

    Example:
        >>> faces_per_chunk(256, memory_budget_mb=2048)
        10
    """
    dev = torch.device(device)
    if memory_budget_mb is None:
        if dev.type == "cuda" and torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(dev)
            memory_budget_mb = free / 2**20 * _CUDA_FREE_FRACTION
        else:
            memory_budget_mb = FACE_CPU_BUDGET_MB
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_face = _ACTIVATION_VALUES_PER_PIXEL * face_size * face_size * itemsize
    return max(1, int(memory_budget_mb * 2**20 // per_face))


def enhance_crops(crops: torch.Tensor, model: FaceModel, *,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  memory_budget_mb: float | None = None,
                  progress: Progress | None = None) -> torch.Tensor:
    """Run the face generator on aligned crops.

    Args:
        crops: ``[F, 3, S, S]`` float in [0, 1] (S a multiple of 32).
        model: the face model (:class:`~oldphoto_core.loading.ModelDescriptor` of kind
            ``face_enhancer``, or the bare ``nn.Module``: ``model(x [-1, 1]) -> [-1, 1]``).
        device, dtype: where and in which precision to run; default: the model's. A model
            elsewhere is moved there for the call and moved back afterwards.
        memory_budget_mb: see :func:`faces_per_chunk`.
        progress: called as ``progress(done, total)`` after each chunk; it may raise to abort
            (e.g. ComfyUI's interrupt), the model is moved back all the same.

    Returns:
        ``[F, 3, S, S]`` float32 in [0, 1] on ``crops.device``.

    Raises:
        InputError: bad crops or model.
    """
    net = _unwrap(model)
    if not isinstance(crops, torch.Tensor) or crops.ndim != 4 or crops.shape[1] != 3:
        shape = list(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
        raise InputError(f"crops: expected [F, 3, S, S], got {shape}")
    n, _, h, w = crops.shape
    if h != w or h % 32:
        raise InputError(f"crops: expected square crops with a side that is a multiple of 32, "
                         f"got {h}x{w}")
    if n == 0:
        return crops.new_zeros((0, 3, h, w), dtype=torch.float32)
    param = next(net.parameters())
    run_device = torch.device(device) if device is not None else param.device
    run_dtype = dtype if dtype is not None else param.dtype
    moved = param.device != run_device or param.dtype != run_dtype
    home = (param.device, param.dtype)
    step = faces_per_chunk(h, dtype=run_dtype, device=run_device,
                           memory_budget_mb=memory_budget_mb)
    out = torch.empty((n, 3, h, w), dtype=torch.float32, device=crops.device)
    try:
        if moved:
            net.to(device=run_device, dtype=run_dtype)
        with network_math():  # inference mode, strict fp32 unless the caller opted into TF32
            for s in range(0, n, step):
                x = crops[s:s + step].to(device=run_device, dtype=torch.float32)
                x = ((x - 0.5) / 0.5).to(run_dtype)
                y = net(x).to(torch.float32)
                out[s:s + step] = ((y + 1) / 2).clamp_(0, 1).to(crops.device)
                if progress is not None:
                    progress(min(s + step, n), n)
    finally:
        if moved:
            net.to(device=home[0], dtype=home[1])
    return out


#: Any face restorer working on aligned crops (CodeFormer, GFPGAN, GPEN ... wrapped by a user):
#: ``[F, 3, S, S]`` float in [0, 1] -> ``[F, 3, S', S']`` in [0, 1], any side ``S'``.
CropRestorer = Callable[[torch.Tensor], torch.Tensor]


def _is_crop_restorer(model: object) -> bool:
    return callable(model) and not isinstance(model, nn.Module) and not hasattr(model, "arch")


def restore_crops_with(fn: CropRestorer, crops: torch.Tensor) -> torch.Tensor:
    """Run another restorer on aligned crops; its output is checked and brought back to the
    crops' size (antialiased bilinear), dtype and device, so the blend needs nothing else.

    Raises:
        InputError: the restorer returned something other than one crop per input crop.
    """
    out = fn(crops)
    n, _, s, _ = crops.shape
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[:2] != (n, 3):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"the face restorer returned {shape} for {n} crops; expected "
                         f"[{n}, 3, H, W] in [0, 1]")
    out = out.to(device=crops.device, dtype=torch.float32)
    if out.shape[-2:] != (s, s):
        out = F.interpolate(out, size=(s, s), mode="bilinear", antialias=True,
                            align_corners=False)
    return out.clamp_(0.0, 1.0)


def enhance_faces(faces: list[list[Face]], model: FaceModel | CropRestorer, *,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  memory_budget_mb: float | None = None,
                  progress: Progress | None = None) -> list[list[Face]]:
    """Enhance every aligned face of a batch in one pass (chunked by ``memory_budget_mb``).

    Args:
        faces: per batch item, aligned faces (see :func:`~oldphoto_core.faces.align_faces`).
        model: the SPADE face model (see :func:`enhance_crops`), or any :data:`CropRestorer`
            (a plain callable on crops: another restorer, see :func:`restore_crops_with`).
        device, dtype, memory_budget_mb, progress: see :func:`enhance_crops` (SPADE only).

    Returns:
        Per item, new :class:`Face` records with ``enhanced`` ([3, S, S] float32 in [0, 1]).

    Raises:
        InputError: a face is not aligned, or faces have different crop sizes.
    """
    flat = [f for item in faces for f in item]
    if not flat:
        return [[] for _ in faces]
    if any(f.aligned is None for f in flat):
        raise InputError("enhance_faces: every face must be aligned first (align_faces)")
    sizes = {tuple(f.aligned.shape) for f in flat}
    if len(sizes) != 1:
        raise InputError(f"enhance_faces: all aligned crops must have one size, got {sizes}")
    crops = torch.stack([f.aligned for f in flat])
    if _is_crop_restorer(model):
        enhanced = restore_crops_with(model, crops)
    else:
        enhanced = enhance_crops(crops, model, device=device, dtype=dtype,
                                 memory_budget_mb=memory_budget_mb, progress=progress)
    it = iter(range(len(flat)))
    return [[f.with_(enhanced=enhanced[next(it)]) for f in item] for item in faces]
