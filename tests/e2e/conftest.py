"""Makes ``tests/e2e/comfy_e2e.py`` (starting a real ComfyUI, its HTTP/websocket client) and
``soak_graphs.py`` (the soak test's prompts) importable from the end-to-end test modules:
under ``--import-mode=importlib`` this folder is not on ``sys.path``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

for _name in ("comfy_e2e", "soak_graphs"):
    if _name not in sys.modules:
        _spec = importlib.util.spec_from_file_location(_name,
                                                       Path(__file__).with_name(f"{_name}.py"))
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _module
        _spec.loader.exec_module(_module)
