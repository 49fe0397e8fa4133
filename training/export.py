"""Write a trained generator where users can use it at once.

The file is ``.safetensors`` with the published key layout (the module of
:mod:`oldphoto_core.arch` is saved as is), named after the published role, with metadata: the
architecture id that ``oldphoto info`` shows, the role that :class:`~oldphoto_core.ModelStore`
reads (it tells the three VAEs and the two face sizes apart), and the training facts (stage,
step, width, data size ...). :func:`verify` loads it back through the engine's loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from oldphoto_core.loading import (
    ModelDescriptor,
    load_model,
    save_safetensors,
)

__all__ = ["Export", "write_generator", "verify", "training_metadata"]


@dataclass(frozen=True)
class Export:
    """What a stage exports.

    Attributes:
        module: the engine network (keys as published).
        arch_id: its registry id (``vae``, ``mapping_scratch``, ``scratch_unet`` ...).
        role: the :data:`oldphoto_core.models.ROLES` name it stands for.
        filename: the file name under ``--out``.
    """

    module: nn.Module
    arch_id: str
    role: str
    filename: str


def training_metadata(**facts: object) -> dict[str, str]:
    """``{"oldphoto.training.<name>": str(value)}`` for the facts that are not None."""
    return {f"oldphoto.training.{k}": str(v) for k, v in facts.items() if v is not None}


def write_generator(export: Export, out_dir: Path, facts: Mapping[str, object]) -> Path:
    """Write ``export`` to ``out_dir/export.filename`` (atomically); return the path."""
    path = out_dir / export.filename
    tmp = path.with_name(path.name + ".tmp")
    metadata = {"oldphoto.role": export.role,
                "oldphoto.source": f"training/{facts.get('stage', '?')}",
                **training_metadata(**facts)}
    save_safetensors(export.module.state_dict(), tmp, arch_id=export.arch_id,
                     source=metadata["oldphoto.source"], metadata=metadata)
    tmp.replace(path)
    return path


def verify(path: Path, arch_id: str) -> ModelDescriptor:
    """Load ``path`` as the engine does (recognised from its keys, strict) and check the id.

    Raises:
        oldphoto_core.errors.CheckpointError: not recognised as ``arch_id`` or not loading
            strictly.
    """
    return load_model(path, expect=arch_id)
