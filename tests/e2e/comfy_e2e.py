"""A real ComfyUI for the end-to-end tests: start it, talk to it (HTTP and websocket), watch it.

The pack is installed by symlink into ``custom_nodes`` of a temporary ``--base-directory``
(models, input, output, user: nothing is written into the checkout), synthetic weights of the
parity kit are written there at the published paths (the face model in a second folder added by
``--extra-model-paths-config``, which the pack must keep), and ComfyUI is started with
``main.py --cpu --listen 127.0.0.1`` on a free port.

ComfyUI's interpreter: ``$COMFYUI_PYTHON``, else ``$COMFYUI_PATH/.venv/bin/python`` or
``venv/bin/python`` when present, else this interpreter. It needs ComfyUI's requirements and the
pack's (``requirements.txt``), not this package: ComfyUI imports the engine from the pack folder.

Imported by the test modules as ``comfy_e2e`` (``tests/e2e/conftest.py`` registers it).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMFYUI = os.environ.get("COMFYUI_PATH", "")
API_DIR = REPO / "example_workflows" / "api"
START_TIMEOUT = 180
RUN_TIMEOUT = 300
SKIP_REASON = ("COMFYUI_PATH is not set: the end-to-end tests need a ComfyUI checkout "
               "(COMFYUI_PATH=/path/to/ComfyUI)")

# role of the parity kit's manifests (by published path) we write; the HR mapping and the 512 px
# face model are not used by the shipped workflows
SKIP_MANIFESTS = {"mapping_patch_attention", "face_spade_512"}
FACE_FILE = "Face_Enhancement/checkpoints/Setting_9_epoch_100/latest_net_G.pth"
SAMPLE = "old_w_scratch/b.png"  # 256x256, a cracked photo of a boy (dlib finds his face)

__all__ = ["API_DIR", "COMFYUI", "Client", "Events", "FACE_FILE", "REPO", "RUN_TIMEOUT",
           "SAMPLE", "SKIP_REASON", "api", "comfyui_python", "free_port", "parity_dir",
           "samples_dir", "start_comfyui", "write_synthetic_models"]


def comfyui_python() -> str:
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    for venv in (".venv", "venv"):
        p = Path(COMFYUI) / venv / "bin" / "python"
        if p.exists():
            return str(p)
    return sys.executable


def parity_dir() -> Path:
    env = os.environ.get("OLDPHOTO_PARITY_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "parity"
    if not p.is_dir():
        pytest.skip(f"parity kit (synthetic weights) not found at {p}: set OLDPHOTO_PARITY_DIR")
    return p


def samples_dir() -> Path:
    env = os.environ.get("OLDPHOTO_SAMPLES_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "samples"
    if not (p / SAMPLE).is_file():
        pytest.skip(f"sample photo {SAMPLE} not found under {p}: set OLDPHOTO_SAMPLES_DIR")
    return p


def write_synthetic_models(models: Path, extra: Path) -> None:
    parity = parity_dir()
    spec = importlib.util.spec_from_file_location("oldphoto_e2e_synth", parity / "synth.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    seeds = json.loads((parity / "index.json").read_text())["seeds"]
    for name, seed in seeds.items():
        if name in SKIP_MANIFESTS:
            continue
        manifest = parity / "manifests" / f"{name}.json"
        ckpt = json.loads(manifest.read_text())["checkpoint"]
        sd = synth.synth_from_manifest_file(manifest, seed)
        root = extra if ckpt["path"].startswith("Face_Enhancement/") else models
        path = root / ckpt["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_state": sd} if "model_state" in ckpt["file_format"] else sd, path)
        del sd


#: ComfyUI's VRAM modes: argparse refuses them together with ``--cpu``
VRAM_MODES = {"--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram"}
#: ``python -c`` launcher of ``main.py`` (``sys.argv[1:]``) that runs a VRAM mode on the CPU:
#: the options are parsed as given, then the CPU is forced as ``--cpu`` would.
CPU_LAUNCHER = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "import comfy.options\n"
    "comfy.options.enable_args_parsing()\n"
    "from comfy.cli_args import args\n"
    "args.cpu = True\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(name: str) -> dict:
    """An API-format workflow of ``example_workflows/api``."""
    return json.loads((API_DIR / f"{name}.api.json").read_text())


class Client:
    """HTTP client of one ComfyUI server process."""

    def __init__(self, url: str, proc: subprocess.Popen, base: Path, log: Path) -> None:
        self.url, self.proc, self.base, self.log = url, proc, base, log

    def request(self, path: str, data: dict | None = None, timeout: float = 30):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"null")
            except ValueError:  # some endpoints answer plain text (e.g. /interrupt, /queue)
                return e.code, raw.decode(errors="replace")

    def post(self, path: str, data: dict, timeout: float = 30) -> int:
        """POST to an endpoint that answers without a JSON body; the status code."""
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def submit(self, prompt: dict, client_id: str = "oldphoto-e2e") -> str:
        """POST a prompt that must validate; its id."""
        status, answer = self.request("/prompt", {"prompt": prompt, "client_id": client_id})
        assert status == 200, f"/prompt refused: {json.dumps(answer, indent=1)[:3000]}"
        return answer["prompt_id"]

    def finished(self, prompt_id: str) -> dict | None:
        """The history entry of a prompt once it ended (success, error or interrupted)."""
        status, hist = self.request(f"/history/{prompt_id}")
        if status != 200 or prompt_id not in hist:
            return None
        st = hist[prompt_id].get("status") or {}
        if st.get("completed") or st.get("status_str") == "error":
            return hist[prompt_id]
        return None

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """Wait for a prompt on /history; its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ComfyUI died:\n{self.log_tail()}"
            entry = self.finished(prompt_id)
            if entry is not None:
                return entry
            time.sleep(0.2)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout:.0f}s:\n"
                             f"{self.log_tail()}")

    def run(self, prompt: dict) -> dict:
        """POST a prompt, wait for it on /history, return its history entry."""
        return self.wait(self.submit(prompt))

    def alive(self) -> bool:
        status, stats = self.request("/system_stats", timeout=10)
        return status == 200 and "system" in stats

    def rss(self) -> int:
        """Resident memory of the server process, bytes (``VmRSS`` of ``/proc``)."""
        return _proc_status(self.proc.pid, "VmRSS")

    def peak_rss(self) -> int:
        """Peak resident memory of the server process so far, bytes (``VmHWM``)."""
        return _proc_status(self.proc.pid, "VmHWM")


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class Events:
    """ComfyUI's websocket (``/ws?clientId=...``) read in a thread, standard library only.

    Every JSON message is kept as ``(time.monotonic() on arrival, type, data)``; binary frames
    (previews) are dropped. ``wait_for`` blocks until a message matches.
    """

    def __init__(self, url: str, client_id: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.messages: list[tuple[float, str, dict]] = []
        self._cond = threading.Condition()
        self._sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                           .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self._sock.settimeout(None)
        self._closed = False
        self._thread = threading.Thread(target=self._read_loop, name="comfy-ws", daemon=True)
        self._thread.start()

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        head = bytes([0x80 | opcode, 0x80 | len(payload)])  # control frames: < 126 bytes
        self._sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read_loop(self) -> None:
        parts: list[bytes] = []
        kind = 0
        try:
            while not self._closed:
                b0, b1 = self._recv(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self._recv(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self._recv(8))[0]
                mask = self._recv(4) if b1 & 0x80 else None
                payload = self._recv(n)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                opcode = b0 & 0x0F
                if opcode == 8:
                    break
                if opcode == 9:
                    self._send(10, payload)
                    continue
                if opcode in (1, 2):
                    kind, parts = opcode, [payload]
                elif opcode == 0:
                    parts.append(payload)
                else:
                    continue
                if not b0 & 0x80:
                    continue  # more fragments follow
                if kind == 1:
                    msg = json.loads(b"".join(parts))
                    with self._cond:
                        self.messages.append((time.monotonic(), msg.get("type", ""),
                                              msg.get("data") or {}))
                        self._cond.notify_all()
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def wait_for(self, match: Callable[[str, dict], bool], timeout: float,
                 since: int = 0) -> tuple[int, float, str, dict]:
        """The first message from index ``since`` on for which ``match(type, data)`` holds, as
        ``(index, arrival time, type, data)``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = since
            while True:
                while i < len(self.messages):
                    t, typ, data = self.messages[i]
                    if match(typ, data):
                        return i, t, typ, data
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(f"no matching websocket message within {timeout:.0f}s "
                                         f"(last: {self.messages[-3:]})")
                self._cond.wait(left)

    def __len__(self) -> int:
        with self._cond:
            return len(self.messages)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def start_comfyui(tmp_path_factory, name: str = "comfy", *, models: bool = True,
                  args: Sequence[str] = ()) -> Iterator[Client]:
    """A ComfyUI server with the pack and the synthetic models (``models=False``: an empty
    ``models/oldphoto``, so the bundled default set runs); terminated on exit. ``args``: more
    command-line options of ``main.py``; a VRAM mode (``--highvram`` ...), which ComfyUI's
    parser refuses beside ``--cpu``, runs on the CPU through :data:`CPU_LAUNCHER`."""
    if not COMFYUI:
        pytest.skip(SKIP_REASON)
    main = Path(COMFYUI) / "main.py"
    if not main.is_file():
        pytest.fail(f"COMFYUI_PATH={COMFYUI} has no main.py")
    samples = samples_dir()
    base = tmp_path_factory.mktemp(f"{name}_base")
    for d in ("custom_nodes", "input", "output", "user", "models/oldphoto"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "oldphoto").symlink_to(REPO, target_is_directory=True)
    extra = tmp_path_factory.mktemp(f"{name}_extra_models")
    if models:
        write_synthetic_models(base / "models" / "oldphoto", extra)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"oldphoto_e2e:\n    oldphoto: {extra}\n")
    photo = Image.open(samples / SAMPLE).convert("RGB")
    photo.save(base / "input" / "old_photo.png")
    photo.save(base / "input" / "clean_photo.png")
    port = free_port()
    log = base / "comfyui.log"
    options = ["--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
               "--extra-model-paths-config", str(yaml), "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", *args]
    if VRAM_MODES & set(args):
        cmd = [comfyui_python(), "-c", CPU_LAUNCHER, str(main), *options]
    else:
        cmd = [comfyui_python(), str(main), "--cpu", *options]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get(
        "OMP_NUM_THREADS", "2"))
    env.pop("OLDPHOTO_MODELS", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=COMFYUI, stdout=out, stderr=subprocess.STDOUT, env=env)
    client = Client(f"http://127.0.0.1:{port}", proc, base, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{client.log_tail()}")
            try:
                if client.alive():
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ComfyUI did not answer in {START_TIMEOUT}s:\n{client.log_tail()}")
            time.sleep(1)
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
