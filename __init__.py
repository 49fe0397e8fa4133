"""ComfyUI entry point of the oldphoto node pack.

ComfyUI imports this folder as a package and reads the two mappings below. The nodes live in
``nodes/``; the engine (``oldphoto_core``) never imports ComfyUI.

Installed by ComfyUI-Manager or ``git clone`` into ``custom_nodes``, the engine is not a
pip-installed package: it is imported from this folder by path (never by putting this folder on
``sys.path``, where our ``nodes`` package would shadow ComfyUI's own ``nodes`` module).
"""

import importlib.util
import sys
from pathlib import Path


def _ensure_core() -> None:
    if "oldphoto_core" in sys.modules:
        return
    here = Path(__file__).resolve().parent / "oldphoto_core"
    # the copy beside the nodes, even if another version is pip-installed: they must match
    spec = importlib.util.spec_from_file_location(
        "oldphoto_core", here / "__init__.py", submodule_search_locations=[str(here)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["oldphoto_core"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["oldphoto_core"]
        raise


if __package__:
    _ensure_core()
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # Imported as a plain file, not as ComfyUI's package: e.g. pytest setting up the repository
    # folder as a package when its name is not a Python identifier ("oldphoto-main"). There is
    # no parent package to import the nodes relative to, so there are none to export.
    NODE_CLASS_MAPPINGS: dict[str, type] = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
