"""``oldphoto restore`` on real sample scans with synthetic weights in the published layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto_core.cli.commands import main
from oldphoto_core.cli.manifest import last_rows, read_manifest


def _samples(parity: Path) -> Path:
    return parity.parent / "samples"


def test_restore_folder_resume_and_bad_file(tmp_path: Path, parity: Path,
                                            tiny_models_dir: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_samples(parity) / "old_w_scratch" / "b.png", src / "cracked.png")
    gray = np.asarray(Image.open(_samples(parity) / "old" / "a.png").convert("L"))[:120, :100]
    Image.fromarray(gray).save(src / "gray.png")
    (src / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--models", str(tiny_models_dir), "--faces", "off",
            "--device", "cpu"]

    assert main(["restore", *args]) == 1            # the broken file fails, the rest goes on
    report = capsys.readouterr()
    assert "broken.png" in report.err and "restored 2" in report.out
    cracked = Image.open(out / "cracked.png")
    assert cracked.size == (256, 256) and cracked.mode == "RGBA"   # RGBA input keeps alpha
    restored_gray = Image.open(out / "gray.png")
    assert restored_gray.size == (100, 120) and restored_gray.mode == "L"
    assert np.asarray(restored_gray).std() > 0

    rows = last_rows(out / "manifest.jsonl")         # one row per input, what happened
    assert {Path(k).name: r["status"] for k, r in rows.items()} == {
        "cracked.png": "restored", "gray.png": "restored", "broken.png": "failed"}
    assert rows[str(src / "gray.png")]["size"] == [100, 120]
    assert rows[str(src / "gray.png")]["mode"] in ("quality", "scratch")
    assert rows[str(src / "broken.png")]["error"] and rows[str(src / "broken.png")]["seconds"] >= 0

    (src / "broken.png").unlink()
    assert main(["restore", *args]) == 0            # resume: nothing redone, nothing silent
    report = capsys.readouterr().out
    assert "restored 0, skipped 2" in report and "cracked.png exists" in report
    assert len(read_manifest(out / "manifest.jsonl")) == 5    # the rerun appended its rows
    assert {r["status"] for r in last_rows(out / "manifest.jsonl").values()} == {"skipped",
                                                                                 "failed"}


def test_missing_checkpoints_are_named(tmp_path: Path, capsys) -> None:
    img = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(img)
    code = main(["restore", str(img), "-o", str(tmp_path / "o"), "--models",
                 str(tmp_path / "empty"), "--scratch", "off", "--faces", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert "VAE_A_quality" in err and "mapping_quality/latest_net_mapping_net.pth" in err
    assert "Traceback" not in err


def test_unknown_input_is_reported(tmp_path: Path, tiny_models_dir: Path, capsys) -> None:
    code = main(["restore", str(tmp_path / "nope*.png"), "-o", str(tmp_path / "o"),
                 "--models", str(tiny_models_dir), "--faces", "off"])
    assert code == 1
    assert "matches no file" in capsys.readouterr().err


def test_scratch_threshold_reaches_the_restorer(tiny_models_dir: Path, capsys) -> None:
    """``--scratch-threshold`` is the Restorer's threshold; without it the set's (the
    reference's 0.4 for a folder without a manifest); outside (0, 1) the parser refuses it."""
    from oldphoto_core.cli.commands import build_parser
    from oldphoto_core.cli.restore import build_restorer

    base = ["restore", "a.png", "-o", "out", "--models", str(tiny_models_dir), "--faces", "off"]
    args = build_parser().parse_args([*base, "--scratch-threshold", "0.9"])
    assert build_restorer(args).scratch_threshold == 0.9
    assert build_restorer(build_parser().parse_args(base)).scratch_threshold == 0.4
    for bad in ("0", "1", "1.5", "x"):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args([*base, "--scratch-threshold", bad])
        assert stop.value.code == 2
        assert "between 0 and 1" in capsys.readouterr().err
