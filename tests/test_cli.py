"""``oldphoto convert`` and ``oldphoto info``."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from oldphoto_core import load_model
from oldphoto_core.arch import ScratchUNet
from oldphoto_core.cli.commands import main


def test_convert_writes_identical_safetensors_with_metadata(tmp_path: Path, capsys):
    torch.manual_seed(0)
    sd = ScratchUNet(base=8).state_dict()
    src = tmp_path / "detection" / "FT_Epoch_latest.pt"
    src.parent.mkdir()
    torch.save({"model_state": sd}, src)
    dst = tmp_path / "scratch.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "verified identical" in capsys.readouterr().out
    with safe_open(str(dst), framework="pt") as f:
        meta = f.metadata()
    assert meta["oldphoto.arch"] == "scratch_unet"
    assert meta["oldphoto.source"] == "detection/FT_Epoch_latest.pt"
    a, b = load_model(src), load_model(dst)
    x = torch.randn(1, 1, 32, 48)
    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x))
    # refuses to overwrite without --overwrite, with a message and no traceback
    assert main(["convert", str(src), str(dst)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_convert_refuses_bad_input_cleanly(tmp_path: Path, capsys):
    src = tmp_path / "x.pth"
    src.write_text("hello")
    assert main(["convert", str(src), str(tmp_path / "y.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint" in err and str(src) in err
    assert not (tmp_path / "y.safetensors").exists()


def test_info_reports_each_file(tmp_path: Path, capsys):
    torch.manual_seed(0)
    good = tmp_path / "u.pt"
    torch.save(ScratchUNet(base=8).state_dict(), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    assert main(["info", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "scratch_unet" in out and "empty" in out
