"""What a command-line user sees when inputs are bad: run as a subprocess, as they run it.

Every bad input must end as one line naming the file and the problem, the good files around it
must still be restored, and no traceback may reach the terminal.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto_core.cli.manifest import read_manifest
from oldphoto_core.io.images import IMAGE_SUFFIXES


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oldphoto_core.cli.commands", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def assert_no_traceback(res: subprocess.CompletedProcess) -> None:
    for stream in (res.stdout, res.stderr):
        assert "Traceback" not in stream, stream


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` and whose pixel data is missing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def photo(h: int = 40, w: int = 56, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """A scan folder as archives have them: good photos among broken and foreign files."""
    src = tmp_path / "scans"
    src.mkdir()
    photo(seed=1).save(src / "a_first.png")
    (src / "b_empty.png").write_bytes(b"")
    (src / "c_garbage.jpg").write_text("this is not a jpeg")
    jpeg = tmp_path / "whole.jpg"
    photo(seed=2).save(jpeg, quality=90)
    (src / "d_truncated.jpg").write_bytes(jpeg.read_bytes()[:300])
    png_header_only(src / "e_huge_header.png", 40000, 40000)
    photo(seed=3).save(src / "f_animation.gif")
    photo(seed=4).convert("L").save(src / "g_gray.tif")
    photo(seed=5).save(src / "z_last.webp")
    (src / "notes.txt").write_text("box 12, shelf 3")
    (src / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (src / "more").mkdir()
    return src


def test_folder_run_reports_every_bad_file_and_restores_the_rest(
        messy_folder: Path, tmp_path: Path, tiny_models_dir: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("restore", str(messy_folder), "-o", str(out), "--models",
                  str(tiny_models_dir), "--faces", "off", "--scratch", "off")
    assert_no_traceback(res)
    assert res.returncode == 1
    # every good file, before and after the bad ones, is restored
    assert sorted(p.name for p in out.glob("*.png")) == [
        "a_first.png", "f_animation.png", "g_gray.png", "z_last.png"]
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".png") == ["manifest.jsonl"]
    assert "restored 4, skipped 0" in res.stdout and "failed 4, not taken 3" in res.stdout
    summary = res.stdout[res.stdout.index("restored 4"):]
    reasons = {
        "b_empty.png": "empty (0 bytes)",
        "c_garbage.jpg": "not an image, or a corrupt or truncated file",
        "d_truncated.jpg": "Truncated File Read",
        "e_huge_header.png": "40000x40000",
        "notes.txt": "not an accepted image format",
        ".DS_Store": "hidden file",
        "more": "subfolder",
    }
    for name, reason in reasons.items():
        line = next((ln for ln in summary.splitlines() if ln.rstrip().split(":")[0]
                     .endswith(os.sep + name)), None)
        assert line is not None and reason in line, (name, summary)
    assert "CV_IO_MAX_IMAGE_PIXELS" in summary  # the 40000x40000 claim names OpenCV's limit


def test_every_accepted_format_is_restored_from_a_folder(tmp_path: Path,
                                                         tiny_models_dir: Path) -> None:
    """The folder filter and the reader agree: what is accepted by name is read."""
    src = tmp_path / "formats"
    src.mkdir()
    for i, suffix in enumerate(IMAGE_SUFFIXES):
        img = photo(24, 32, seed=i)
        fmt = {".jfif": "JPEG", ".jpe": "JPEG", ".dib": "BMP", ".pnm": "PPM",
               ".pgm": "PPM", ".pbm": "PPM"}.get(suffix)
        if suffix == ".pgm":
            img = img.convert("L")
        if suffix == ".pbm":
            img = img.convert("1")
        img.save(src / f"photo{i:02d}{suffix}", format=fmt)
    res = run_cli("restore", str(src), "-o", str(tmp_path / "out"), "--models",
                  str(tiny_models_dir), "--faces", "off", "--scratch", "off")
    assert_no_traceback(res)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"restored {len(IMAGE_SUFFIXES)}, skipped 0" in res.stdout
    assert "failed 0, not taken 0" in res.stdout


def test_output_folder_that_cannot_be_made_stops_before_any_work(
        tmp_path: Path, tiny_models_dir: Path) -> None:
    img = tmp_path / "a.png"
    photo().save(img)
    blocker = tmp_path / "report.txt"
    blocker.write_text("a file, where the output folder would go")
    res = run_cli("restore", str(img), "-o", str(blocker / "restored"), "--models",
                  str(tiny_models_dir), "--faces", "off", "--scratch", "off")
    assert_no_traceback(res)
    assert res.returncode == 2
    assert "output folder" in res.stderr and str(blocker / "restored") in res.stderr


def test_scan_too_large_for_memory_is_refused_up_front_with_the_size_that_fits(
        tmp_path: Path, tiny_models_dir: Path) -> None:
    """A header is enough to refuse; the suggested option then restores the photo."""
    big = tmp_path / "big"
    big.mkdir()
    png_header_only(big / "huge.png", 12000, 12000)   # no pixel data: it must not be decoded
    photo(900, 1200, seed=7).save(big / "page.png")
    env = {"OLDPHOTO_AVAILABLE_MEMORY": str(700 * 2**20)}  # a small machine, deterministic
    args = ["--models", str(tiny_models_dir), "--faces", "off", "--scratch", "off"]
    res = run_cli("restore", str(big / "page.png"), str(big / "huge.png"), "-o",
                  str(tmp_path / "out"), *args, env=env)
    assert_no_traceback(res)
    assert res.returncode == 1
    page = next(ln for ln in res.stdout.splitlines() if "failed" in ln and "page.png" in ln)
    assert "GiB of memory" in page and "0.7 GiB is available" in page
    suggested = float(re.search(r"--max-megapixels (\d+(?:\.\d+)?)", page).group(1))
    assert 0.1 <= suggested < 1.08
    huge = next(ln for ln in res.stdout.splitlines() if "failed" in ln and "huge.png" in ln)
    assert "12000x12000" in huge and "no smaller working size helps" in huge

    res = run_cli("restore", str(big / "page.png"), "-o", str(tmp_path / "out"), *args,
                  "--max-megapixels", str(suggested), env=env)
    assert_no_traceback(res)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "upsampled" in res.stdout
    assert Image.open(tmp_path / "out" / "page.png").size == (1200, 900)


@pytest.fixture
def bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    """Files a user might point ``info`` at, each wrong in its own way."""
    import pickle

    import torch
    from safetensors.torch import save_file

    from oldphoto_core.arch import ScratchUNet
    d = tmp_path / "ckpt"
    d.mkdir()
    files = {}
    files["pickle named safetensors"] = d / "pickled.safetensors"
    files["pickle named safetensors"].write_bytes(pickle.dumps({"w": [1, 2]}, protocol=2))
    files["empty"] = d / "empty.pth"
    files["empty"].write_bytes(b"")
    files["text"] = d / "readme.safetensors"
    files["text"].write_text("download from the release page")
    good = d / "good.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(good))
    files["truncated safetensors"] = d / "cut.safetensors"
    files["truncated safetensors"].write_bytes(good.read_bytes()[:200])
    unet = d / "unet.pt"
    torch.save({"model_state": ScratchUNet(base=4).state_dict()}, unet)
    files["truncated zip"] = d / "cut.pt"
    files["truncated zip"].write_bytes(unet.read_bytes()[:3000])
    files["folder"] = d / "folder.pth"
    files["folder"].mkdir()
    files["foreign network"] = good
    return files


def test_info_names_every_bad_checkpoint_without_a_traceback(
        bad_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from oldphoto_core.arch import ScratchUNet
    # a real torch.save checkpoint under a .safetensors name is recognised by its content
    renamed = tmp_path / "unet_really_a_zip.safetensors"
    torch.save({"model_state": ScratchUNet(base=4).state_dict()}, renamed)
    paths = [str(p) for p in bad_checkpoints.values()]
    res = run_cli("info", *paths, str(renamed))
    assert_no_traceback(res)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    for path in paths:
        assert any(ln.startswith(f"{path}: ERROR {path}") for ln in lines), (path, res.stdout)
    assert any(ln.startswith(f"{renamed}: scratch_unet") for ln in lines), res.stdout


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
        tmp_path: Path, tiny_models_dir: Path, monkeypatch, capsys) -> None:
    """Any exception type inside one photo becomes that photo's failure; the batch goes on."""
    import cv2
    import torch

    from oldphoto_core.cli.commands import main
    from oldphoto_core.pipeline import Restorer
    src = tmp_path / "in"
    src.mkdir()
    raisers = {"a.png": cv2.error("OpenCV(5.0.0) resize: (-215:Assertion failed)"),
               "b.png": ZeroDivisionError("division by zero"),
               "c.png": MemoryError(),
               "d.png": torch.OutOfMemoryError("CUDA out of memory"),
               "e.png": PermissionError(13, "Permission denied")}
    for i, name in enumerate([*raisers, "f.png"]):
        photo(seed=i).save(src / name)
    real = Restorer.restore
    seen: list[str] = []

    def flaky(self, images, **kw):
        name = sorted(raisers)[len(seen)] if len(seen) < len(raisers) else None
        seen.append(name)
        if name is not None:
            raise raisers[name]
        return real(self, images, **kw)

    monkeypatch.setattr(Restorer, "restore", flaky)
    args = ["restore", str(src), "-o", str(tmp_path / "out"), "--models", str(tiny_models_dir),
            "--faces", "off", "--scratch", "off"]
    assert main(args) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and "restored 1," in cap.out and "failed 5" in cap.out
    assert "ZeroDivisionError: division by zero (--debug shows where)" in cap.out
    assert cap.out.count("out of memory") == 2 and "--max-megapixels" in cap.out
    assert (tmp_path / "out" / "f.png").exists()

    seen.clear()
    assert main([*args, "--overwrite", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_stops_with_a_summary(tmp_path: Path, tiny_models_dir: Path, monkeypatch,
                                        capsys) -> None:
    from oldphoto_core.cli.commands import main
    from oldphoto_core.pipeline import Restorer
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        photo(seed=i).save(src / f"{i}.png")
    real = Restorer.restore
    calls = []

    def interrupted_second(self, images, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, images, **kw)

    monkeypatch.setattr(Restorer, "restore", interrupted_second)
    code = main(["restore", str(src), "-o", str(tmp_path / "out"), "--models",
                 str(tiny_models_dir), "--faces", "off", "--scratch", "off"])
    out = capsys.readouterr().out
    assert code == 130
    assert "restored 1," in out and "not reached 2 (interrupted)" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "manifest.jsonl"]
    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")   # the record of what was done
    assert [r["status"] for r in rows] == ["restored"]
