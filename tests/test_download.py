"""``oldphoto models download`` (and ``list``/``verify`` of what it installed).

Downloads come from a loopback HTTP server (127.0.0.1, a free port, a thread) that serves zips
built here from tiny networks of the engine's architectures, saved as the reference saves them
(``torch.save(state_dict)`` at the published paths; the detector under ``model_state``). The
server can cut a response short once, or ignore ``Range``, to exercise resuming. Nothing here
reaches the internet.
"""

from __future__ import annotations

import http.server
import io
import re
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from oldphoto_core.arch import (
    OldPhotoVAE,
    PatchAttentionMapping,
    QualityMapping,
    ScratchMapping,
    ScratchUNet,
    SPADEFaceGenerator,
)
from oldphoto_core.cli import download
from oldphoto_core.cli.commands import main
from oldphoto_core.cli.download import ArchiveRefused, check_members
from oldphoto_core.loading import load_model, read_state_dict
from oldphoto_core.models import ROLES, resolve_models

GLOBAL_ROLES = [r for r in ROLES if ROLES[r].published_path.startswith("Global/")]
FACE_ROLES = [r for r in ROLES if ROLES[r].published_path.startswith("Face_Enhancement/")]


# ---------------------------------------------------------------------------- networks, zips
@pytest.fixture(scope="module")
def weights() -> dict[str, bytes]:
    """``role -> .pth bytes`` of a tiny network per role, as the reference saves them."""
    torch.manual_seed(0)
    nets = {
        "vae_a": OldPhotoVAE(channels=8), "vae_b_quality": OldPhotoVAE(channels=8),
        "vae_b_scratch": OldPhotoVAE(channels=8),
        "mapping_quality": QualityMapping(latent_channels=8, width=16, n_blocks=1),
        "mapping_scratch": ScratchMapping(latent_channels=8, width=16, n_blocks=1),
        "mapping_hr": PatchAttentionMapping(latent_channels=8, width=16),
        "scratch_detector": ScratchUNet(base=2),
        "face_256": SPADEFaceGenerator(base=1), "face_512": SPADEFaceGenerator(base=1),
    }
    out = {}
    for role, net in nets.items():
        sd = net.state_dict()
        out[role] = _pth({"model_state": sd} if role == "scratch_detector" else sd)
    return out


def _pth(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _inner(role: str) -> str:
    """The member name in the published zip: the path below Global/ or Face_Enhancement/."""
    return ROLES[role].published_path.split("/", 1)[1]


def _zip(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, to in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, to)
    return buf.getvalue()


def _global_zip(weights: dict[str, bytes], **replace: bytes) -> bytes:
    members = {_inner(r): replace.get(r, weights[r]) for r in GLOBAL_ROLES}
    members["checkpoints/restoration/VAE_A_quality/opt.txt"] = b"name: VAE_A_quality\n"
    return _zip(members)


def _face_zip(weights: dict[str, bytes]) -> bytes:
    return _zip({_inner(r): weights[r] for r in FACE_ROLES})


# ---------------------------------------------------------------------------- loopback server
class Server:
    """Serves ``files`` by name; records ``(path, Range header)`` of every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}  # name -> bytes sent before closing, first time only
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/releases/download/v1.0"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                rng = self.headers.get("Range")
                srv.requests.append((self.path, rng))
                data = srv.files.get(self.path.rsplit("/", 1)[-1])
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not srv.ignore_range:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = srv.cut_once.pop(self.path.rsplit("/", 1)[-1], None)
                self.wfile.write(body if cut is None else body[:cut])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY", "OLDPHOTO_DOWNLOAD_URL", "OLDPHOTO_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = Server()
    yield srv
    srv.close()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- download
def test_download_installs_what_resolve_then_finds(server, weights, tiny_bundled_set, capsys,
                                                   monkeypatch):
    server.files = {"global_checkpoints.zip": _global_zip(weights),
                    "face_checkpoints.zip": _face_zip(weights)}
    monkeypatch.setenv("OLDPHOTO_DOWNLOAD_URL", server.url)  # no --to, no --base-url
    assert main(["models", "download"]) == 0
    out = capsys.readouterr().out
    assert "installed 9 files" in out and "refused or failed 0" in out
    assert "not installed 1 other archive members\n  global_checkpoints.zip:checkpoints/" \
        "restoration/VAE_A_quality/opt.txt: not one of the published checkpoints" in out
    target = Path("models")
    assert _files(target) == sorted(r.published_path for r in ROLES.values())  # no zip, staging
    store = resolve_models()
    assert store.label == "checkpoints in models (./models)"
    assert store.files == {r: target / ROLES[r].published_path for r in ROLES}
    assert [p for p, _ in server.requests] == ["/releases/download/v1.0/global_checkpoints.zip",
                                               "/releases/download/v1.0/face_checkpoints.zip"]

    assert main(["models", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nOK ") == 9 and "9 OK, 0 failed" in out
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "restore uses: checkpoints in models (./models)" in out
    assert re.search(r"hr +yes", out) and re.search(r"faces 512 px +yes", out)


def test_truncated_download_fails_then_resumes_with_range(server, weights, tmp_path, capsys):
    data = _global_zip(weights)
    server.files = {"global_checkpoints.zip": data}
    server.cut_once = {"global_checkpoints.zip": 5000}
    args = ["models", "download", "--to", str(tmp_path), "--base-url", server.url,
            "--only", "global"]
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "run the same command again to resume" in out and f"5000 of {len(data)}" in out
    assert (tmp_path / "global_checkpoints.zip.part").stat().st_size == 5000
    assert _files(tmp_path) == ["global_checkpoints.zip.part"]

    assert main(args) == 0
    assert server.requests[-1][1] == "bytes=5000-"
    assert "installed 7 files" in capsys.readouterr().out
    assert sorted(resolve_models(tmp_path).files) == sorted(GLOBAL_ROLES)


def test_server_ignoring_range_starts_over(server, weights, tmp_path, capsys):
    server.files = {"global_checkpoints.zip": _global_zip(weights)}
    server.cut_once = {"global_checkpoints.zip": 3000}
    server.ignore_range = True
    args = ["models", "download", "--to", str(tmp_path), "--base-url", server.url,
            "--only", "global", "--keep-zips"]
    assert main(args) == 2
    assert main(args) == 0
    assert server.requests[-1][1] == "bytes=3000-"  # asked to resume, got 200: started over
    assert "does not resume" in capsys.readouterr().err
    assert (tmp_path / "global_checkpoints.zip").read_bytes() == server.files[
        "global_checkpoints.zip"]
    assert len(resolve_models(tmp_path).files) == 7


@pytest.mark.parametrize("evil", ["../evil.pth", "ABSOLUTE", "C:/evil.pth",
                                  "checkpoints/../../evil.pth", "checkpoints\\..\\..\\evil.pth",
                                  "symlink"])
def test_zip_escaping_the_target_is_refused_whole(server, weights, tmp_path, capsys, evil):
    members = {_inner(r): weights[r] for r in GLOBAL_ROLES}
    links = {"checkpoints/restoration/link": "../../../.."} if evil == "symlink" else {}
    if not links:
        evil = str(tmp_path / "evil.pth") if evil == "ABSOLUTE" else evil
        members[evil] = weights["vae_a"]
    server.files = {"global_checkpoints.zip": _zip(members, links)}
    target = tmp_path / "outer" / "models"
    assert main(["models", "download", "--to", str(target), "--base-url", server.url,
                 "--only", "global"]) == 1
    out = capsys.readouterr().out
    assert "installed 0 files" in out and "refused, nothing extracted" in out
    assert ("symbolic link" if links else "evil.pth") in out
    assert _files(tmp_path) == []  # nothing inside the target, nothing beside it


def test_complete_part_file_is_taken_as_is(server, weights, tmp_path, capsys):
    server.files = {"face_checkpoints.zip": _face_zip(weights)}
    (tmp_path / "face_checkpoints.zip.part").write_bytes(server.files["face_checkpoints.zip"])
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url,
                 "--only", "faces"]) == 0
    assert server.requests[-1][1] == f"bytes={len(server.files['face_checkpoints.zip'])}-"
    assert "resuming" in capsys.readouterr().err
    assert sorted(resolve_models(tmp_path).files) == sorted(FACE_ROLES)


def test_absurd_declared_size_is_refused():
    info = zipfile.ZipInfo("checkpoints/restoration/VAE_A_quality/latest_net_G.pth")
    info.file_size = 3 * 1024**3
    with pytest.raises(ArchiveRefused, match="zip bomb"):
        check_members([info], "global_checkpoints.zip")


def test_foreign_or_corrupt_checkpoints_are_not_installed(server, weights, tmp_path, capsys):
    torch.manual_seed(1)
    server.files = {"global_checkpoints.zip": _global_zip(
        weights,
        mapping_quality=weights["vae_a"],  # a VAE where the mapping should be
        mapping_scratch=_pth({"foo.weight": torch.randn(3, 3)}),  # random tensors
        vae_b_scratch=b"PK\x03\x04 this is not a checkpoint",  # corrupt
    )}
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url,
                 "--only", "global"]) == 1
    out = capsys.readouterr().out
    assert "installed 4 files" in out and "refused or failed 3" in out
    zipname = "global_checkpoints.zip:checkpoints/restoration"
    assert re.search(rf"{zipname}/mapping_quality/\S+: holds a VAE", out)
    assert re.search(rf"{zipname}/mapping_scratch/\S+: not a network oldphoto knows", out)
    assert re.search(rf"{zipname}/VAE_B_scratch/\S+: cannot read", out)
    for role in ("mapping_quality", "mapping_scratch", "vae_b_scratch"):
        assert not (tmp_path / ROLES[role].published_path).exists()
    assert sorted(resolve_models(tmp_path).files) == sorted(
        ["vae_a", "vae_b_quality", "mapping_hr", "scratch_detector"])
    assert not list(tmp_path.glob(".oldphoto-staging-*"))


def test_existing_files_are_replaced(server, weights, tmp_path, capsys):
    old = tmp_path / ROLES["vae_a"].published_path
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an older, broken copy")
    server.files = {"global_checkpoints.zip": _global_zip(weights)}
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url,
                 "--only", "global"]) == 0
    assert old.read_bytes() == weights["vae_a"]


def test_convert_installs_safetensors_that_load(server, weights, tmp_path, capsys):
    server.files = {"face_checkpoints.zip": _face_zip(weights),
                    "global_checkpoints.zip": _global_zip(weights)}
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url,
                 "--convert"]) == 0
    expected = sorted(str(Path(r.published_path).with_suffix(".safetensors"))
                      for r in ROLES.values())
    assert _files(tmp_path) == expected
    store = resolve_models(tmp_path)
    assert sorted(store.files) == sorted(ROLES)
    for role, path in store.files.items():
        assert path.suffix == ".safetensors"
        load_model(path, expect=ROLES[role].arch)
    _, meta = read_state_dict(store.files["vae_b_quality"])
    assert meta["oldphoto.source"] == "VAE_B_quality/latest_net_G.pth"
    assert meta["oldphoto.role"] == "vae_b_quality"


def test_network_errors_exit_2(server, weights, tmp_path, capsys):
    server.files = {"global_checkpoints.zip": _global_zip(weights)}  # the face zip is a 404
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url]) == 2
    out = capsys.readouterr().out
    assert "installed 7 files" in out and "HTTP 404" in out
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", "ftp://x"]) == 2
    assert "expected an http:// or https:// URL" in capsys.readouterr().err


def test_interrupt_exits_130_without_staging(server, weights, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    real = download._verified
    monkeypatch.setattr(download, "_verified", interrupted)
    server.files = {"global_checkpoints.zip": _global_zip(weights)}
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url,
                 "--only", "global"]) == 130
    err = capsys.readouterr().err
    assert "oldphoto models: interrupted" in err and "global_checkpoints.zip kept" in err
    assert _files(tmp_path) == ["global_checkpoints.zip"]  # no staging; the zip for next time
    monkeypatch.setattr(download, "_verified", real)  # not undo(): that would bring proxies
    assert main(["models", "download", "--to", str(tmp_path), "--base-url", server.url,
                 "--only", "global"]) == 0
    assert len(server.requests) == 1 and "downloaded before" in capsys.readouterr().err
    assert "global_checkpoints.zip" not in _files(tmp_path)
