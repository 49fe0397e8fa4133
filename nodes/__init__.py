"""The ComfyUI nodes of oldphoto (classic ``NODE_CLASS_MAPPINGS`` API).

Thin adapters over ``oldphoto_core``: layout conversion, device moves, progress, interruption.
Only :mod:`.comfy_compat` touches ComfyUI, so the nodes import and run without it.
"""

from __future__ import annotations

from .all_in_one import ALL_IN_ONE_NODES
from .degrade import DEGRADE_NODES
from .faces import FACE_NODES
from .loaders import LOADER_NODES
from .restoration import RESTORATION_NODES

NODE_CLASS_MAPPINGS: dict[str, type] = {
    **DEGRADE_NODES,
    **RESTORATION_NODES,
    **FACE_NODES,
    **ALL_IN_ONE_NODES,
    **LOADER_NODES,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    node_id: cls.DISPLAY_NAME for node_id, cls in NODE_CLASS_MAPPINGS.items()
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
