"""The pack's models under ComfyUI's model management, against a real ComfyUI:
``COMFYUI_PATH=/path/to/ComfyUI pytest -n 0 tests/e2e/test_e2e_memory.py -s``.

* ``POST /free {"unload_models": true, "free_memory": true}`` (the "Free model and node cache"
  button) after a run releases the pack's models: the server's resident memory drops by at
  least their size (the parity kit's synthetic weights of the published shapes: the scratch
  detector and the scratch mapping, 89 M parameters), and the next run reads them again and
  gives the same image.
* A server started with ``--highvram`` runs a graph (on the CPU: ComfyUI's parser refuses
  ``--highvram`` beside ``--cpu``, so ``comfy_e2e.CPU_LAUNCHER`` forces the CPU after parsing;
  ComfyUI then disables its VRAM modes, as on any CPU).
* The shared ``models/insightface`` folder lists other packs' files (our registration does not
  narrow its extensions).

The figures are printed (``-s``) and written to ``memory_figures.json`` in pytest's tmp folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from comfy_e2e import COMFYUI, SKIP_REASON, Client, api, start_comfyui
from PIL import Image

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI, reason=SKIP_REASON),
]

SETTLE = 12.0        # idle seconds before reading the RSS (ComfyUI collects every 10 s)
FREE_TIMEOUT = 30.0  # seconds for /free to take effect (the queue worker reads its flags)
WORKFLOW = "oldphoto_scratch_restoration"  # detector, VAE_A, mapping_scratch, VAE_B_scratch


def _checkpoints(comfy: Client, prompt: dict) -> list[Path]:
    root = comfy.base / "models" / "oldphoto"
    return [root / n["inputs"]["model_name"] for n in prompt.values()
            if n["class_type"].endswith("Loader") and "model_name" in n["inputs"]]


def _saved(comfy: Client, prompt: dict, hist: dict) -> np.ndarray:
    assert hist["status"]["status_str"] == "success", json.dumps(hist["status"])[:4000]
    save = next(k for k, v in prompt.items() if v["class_type"] == "SaveImage"
                and "mask" not in v["inputs"]["filename_prefix"])
    item = hist["outputs"][save]["images"][0]
    path = comfy.base / "output" / item.get("subfolder", "") / item["filename"]
    return np.asarray(Image.open(path).convert("RGB"))


def _settled_rss(comfy: Client) -> int:
    time.sleep(SETTLE)
    return comfy.rss()


def test_free_releases_the_models(tmp_path_factory):
    with start_comfyui(tmp_path_factory, "free") as comfy:
        prompt = api(WORKFLOW)
        files = _checkpoints(comfy, prompt)
        weights = sum(p.stat().st_size for p in files)
        first = _saved(comfy, prompt, comfy.run(prompt))
        # the all-in-one node on the same files shares the loaded networks
        aio = api("oldphoto_all_in_one")
        next(n for n in aio.values() if n["class_type"] == "OldPhotoRestore")["inputs"].update(
            scratch="on", faces="off")
        assert comfy.run(aio)["status"]["status_str"] == "success"
        before = _settled_rss(comfy)

        assert comfy.post("/free", {"unload_models": True, "free_memory": True}) == 200
        deadline = time.monotonic() + FREE_TIMEOUT
        while time.monotonic() < deadline and before - comfy.rss() < weights:
            time.sleep(0.5)
        after = _settled_rss(comfy)
        figures = {"checkpoints": [str(p.relative_to(comfy.base)) for p in files],
                   "weights_bytes": weights, "rss_before_free": before, "rss_after_free": after,
                   "released": before - after}
        Path(tmp_path_factory.getbasetemp(), "memory_figures.json").write_text(
            json.dumps(figures, indent=1))
        print(f"\nRSS before /free {before / 2**20:.0f} MiB, after {after / 2**20:.0f} MiB: "
              f"{(before - after) / 2**20:.0f} MiB released; the models weigh "
              f"{weights / 2**20:.0f} MiB")
        assert before - after >= weights, comfy.log_tail()

        again = _saved(comfy, prompt, comfy.run(prompt))  # read from disk again
        assert np.array_equal(first, again)
        assert comfy.rss() - after >= weights * 0.9  # really reloaded (not kept elsewhere)


def test_a_highvram_server_runs_a_graph(tmp_path_factory):
    with start_comfyui(tmp_path_factory, "highvram", args=["--highvram"]) as comfy:
        other = comfy.base / "models" / "insightface"
        other.mkdir(parents=True, exist_ok=True)
        (other / "another_pack_model.pth").write_bytes(b"not ours")  # e.g. a face-swap model
        prompt = api("oldphoto_quality_restoration")
        out = _saved(comfy, prompt, comfy.run(prompt))
        assert out.shape == (256, 256, 3) and out.std() > 2
        log = comfy.log_tail(10**7)
        assert "Set vram state to: DISABLED" in log and "Device: cpu" in log  # --highvram, CPU
        status, listed = comfy.request("/models/insightface")
        assert status == 200 and "another_pack_model.pth" in listed
