"""Makes ``tests/e2e/comfy_e2e.py`` (starting a real ComfyUI, its HTTP/websocket client)
importable as ``comfy_e2e`` from the end-to-end test modules: under ``--import-mode=importlib``
this folder is not on ``sys.path``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "comfy_e2e" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("comfy_e2e",
                                                   Path(__file__).with_name("comfy_e2e.py"))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["comfy_e2e"] = _module
    _spec.loader.exec_module(_module)
