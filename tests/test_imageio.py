"""The image reader: every accepted format reads, every broken file is an InputError naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto_core import InputError, OutputError, read_image, write_image
from oldphoto_core.io.images import IMAGE_SUFFIXES, probe_image

_PIL_FORMAT = {".jfif": "JPEG", ".jpe": "JPEG", ".dib": "BMP", ".pnm": "PPM", ".pgm": "PPM",
               ".pbm": "PPM"}
_LOSSLESS = {".png", ".tif", ".tiff", ".bmp", ".dib", ".webp", ".ppm", ".pnm"}


def _pixels(seed: int, h: int = 12, w: int = 18) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_every_accepted_suffix_is_read(tmp_path: Path, suffix: str) -> None:
    arr = _pixels(len(suffix))
    img = Image.fromarray(arr)
    if suffix == ".pgm":
        img = img.convert("L")
    elif suffix == ".pbm":
        img = img.convert("1")
    path = tmp_path / f"photo{suffix}"
    img.save(path, format=_PIL_FORMAT.get(suffix), lossless=True) if suffix == ".webp" else \
        img.save(path, format=_PIL_FORMAT.get(suffix))
    assert probe_image(path) == (12, 18)
    t, info = read_image(path)
    assert t.shape[-2:] == (12, 18) and t.dtype == torch.float32 and info.bit_depth == 8
    if suffix in _LOSSLESS:  # the pixels themselves, in RGB order
        got = (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(got, arr)


def test_gif_reads_when_opencv_cannot(tmp_path: Path, monkeypatch) -> None:
    """GIF is accepted whatever the OpenCV build: Pillow decodes what OpenCV does not."""
    import cv2
    path = tmp_path / "a.gif"
    Image.fromarray(_pixels(1)).save(path)
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: None)
    t, info = read_image(path)
    assert t.shape == (1, 3, 12, 18) and info.channels == 3


def _png_header(path: Path, w: int, h: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2,
                                                                         0, 0, 0))
                     + chunk(b"IEND", b""))


def _broken(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.jpg"
    Image.fromarray(_pixels(0, 64, 64)).save(good)
    png = tmp_path / "good.png"
    Image.fromarray(_pixels(0, 64, 64)).save(png)
    cases = {
        "empty": (tmp_path / "empty.png", "empty"),
        "text": (tmp_path / "text.jpg", "cannot identify image file"),
        "truncated jpeg header": (tmp_path / "cut_head.jpg", "Truncated File Read"),
        "truncated jpeg data": (tmp_path / "cut_data.jpg", "cannot be decoded"),
        "truncated png data": (tmp_path / "cut_data.png", "cannot be decoded"),
        "header beyond OpenCV's limit": (tmp_path / "huge.png", "CV_IO_MAX_IMAGE_PIXELS"),
        "missing": (tmp_path / "missing.png", "no such file"),
        "folder": (tmp_path / "folder.png", "folder"),
    }
    cases["empty"][0].write_bytes(b"")
    cases["text"][0].write_text("hello")
    cases["truncated jpeg header"][0].write_bytes(good.read_bytes()[:100])
    cases["truncated jpeg data"][0].write_bytes(good.read_bytes()[:-600])
    cases["truncated png data"][0].write_bytes(png.read_bytes()[:-2000])
    _png_header(cases["header beyond OpenCV's limit"][0], 40000, 40000)
    cases["folder"][0].mkdir()
    return cases


def test_broken_files_raise_input_error_naming_the_file(tmp_path: Path) -> None:
    for what, (path, reason) in _broken(tmp_path).items():
        with pytest.raises(InputError) as info:
            read_image(path)
        assert str(path) in str(info.value) and reason in str(info.value), (what, info.value)


def test_permission_and_memory_errors_name_the_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(_pixels(0)).save(path)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    def exhausted(*a, **k):
        raise MemoryError

    monkeypatch.setattr(np, "fromfile", denied)
    with pytest.raises(InputError, match="Permission denied") as info:
        read_image(path)
    assert str(path) in str(info.value)
    monkeypatch.setattr(np, "fromfile", exhausted)
    with pytest.raises(InputError, match="not enough memory to decode 18x12"):
        read_image(path)


def test_float_formats_are_refused(tmp_path: Path) -> None:
    import cv2
    path = tmp_path / "light.tif"   # a 32-bit float TIFF: a header we read, pixels we refuse
    assert cv2.imwrite(str(path), np.ones((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="8 or 16 bits"):
        read_image(path)
    hdr = tmp_path / "light.hdr"
    ok, buf = cv2.imencode(".hdr", np.ones((8, 8, 3), np.float32))
    buf.tofile(str(hdr))
    with pytest.raises(InputError, match="8 or 16 bits"):  # Pillow cannot parse it; OpenCV can
        read_image(hdr)


def test_write_errors_are_output_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot be written") as info:
        write_image(blocker / "sub" / "out.png", torch.zeros(1, 3, 4, 4))
    assert str(blocker / "sub" / "out.png") in str(info.value)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_write_then_read_is_exact_at_the_bit_depth(tmp_path: Path, channels: int,
                                                   bit_depth: int) -> None:
    levels = 255 if bit_depth == 8 else 65535
    g = torch.Generator().manual_seed(channels)
    x = torch.randint(0, levels + 1, (1, channels, 5, 7), generator=g).float() / levels
    write_image(tmp_path / "x.png", x, bit_depth=bit_depth)
    y, info = read_image(tmp_path / "x.png")
    assert info.bit_depth == bit_depth and y.shape == x.shape
    # both ways are exact on k / levels: float32 holds k / 65535 to 2**-24 relative, so
    # floor(v * levels + 0.5) recovers k
    assert torch.equal((y * levels).round(), (x * levels).round())
