"""Whole-stage parity with the reference's command-line runs (``$OLDPHOTO_PARITY_DIR/pipeline``).

Runs are discovered from the folder; each run's mode comes from the reference command it
recorded (``--Quality_restore``, ``--Scratch_and_Quality_restore``, ``--HR``). Thresholds are
those of the kit's TOLERANCES.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from oldphoto_core.pipeline import Restorer


def _runs(parity: Path) -> list[Path]:
    return sorted(p.parent for p in (parity / "pipeline").glob("*/run.json"))


def _mode(run: dict) -> tuple[str, bool]:
    """(scratch setting, hr) from the reference's Global/test.py command line."""
    argv = [a for c in run["commands"] for a in c["argv"]]
    if "--Quality_restore" in argv:
        return "off", False
    return "on", "--HR" in argv


def _png(path: Path) -> torch.Tensor:
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def _assert_png_close(name: str, ours01: torch.Tensor, ref_png: Path) -> None:
    """>= 99.5 % of values within 1 level, none off by more than 3 (TOLERANCES.md)."""
    ours = torch.floor(ours01 * 255 + 0.5).clamp(0, 255)
    ref = torch.round(_png(ref_png) * 255)
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    diff = (ours - ref).abs()
    assert float((diff <= 1).float().mean()) >= 0.995, f"{name}: too many values off by > 1"
    assert float(diff.max()) <= 3, f"{name}: a value is off by {float(diff.max()):.0f}"


def test_pipeline_run_parity(global_run: Path, parity: Path, synthetic_store) -> None:
    run = json.loads((global_run / "run.json").read_text())
    scratch, hr = _mode(run)
    files = {k: parity / v for k, v in run["files"].items()}
    source = files.get("input", files.get("detection_input"))
    result = Restorer(synthetic_store).restore(_png(source), scratch=scratch, hr=hr)
    w = result.working

    ref = load_file(global_run / "restored_float.safetensors")
    ref_float = next(iter(ref.values()))
    err = (w["restored"] - ref_float).abs()
    # TOLERANCES.md: restored_float max abs diff <= 2e-3, mean abs diff <= 2e-4
    assert err.max() <= 2e-3 and err.mean() <= 2e-4, \
        f"restored float: max {float(err.max()):.3g}, mean {float(err.mean()):.3g}"
    _assert_png_close("restored.png", w["stretched"], files["restored"])
    for key in ("resized_input", "detection_input"):
        if key in files:
            _assert_png_close(f"{key}.png", w["input"], files[key])
    if "mask" in files and scratch == "on" and not hr:
        ref_mask = _png(files["mask"])[:, :1]
        differ = float((w["mask"] != ref_mask).float().mean())
        assert differ <= 0.005, f"mask: {differ:.2%} of pixels differ"  # TOLERANCES.md
    # the result itself comes back at the input's size
    assert result.images.shape[-2:] == _png(source).shape[-2:]


def test_pipeline_runs_discovered(parity: Path) -> None:
    assert _runs(parity), "the parity kit holds no pipeline run"
