"""End to end against a real ComfyUI: ``COMFYUI_PATH=/path/to/ComfyUI pytest -n 0 tests/e2e``.

The pack is installed by symlink into ``custom_nodes`` of a temporary ``--base-directory``
(models, input, output, user: nothing is written into the checkout), synthetic weights of the
parity kit are written there at the published paths (the face model in a second folder added by
``--extra-model-paths-config``, which the pack must keep), and ComfyUI is started with
``main.py --cpu --listen 127.0.0.1`` on a free port. Every API workflow of
``example_workflows/api`` is posted to ``/prompt`` and awaited on ``/history``; then broken
prompts must get clear errors while the server stays up.

ComfyUI's interpreter: ``$COMFYUI_PYTHON``, else ``$COMFYUI_PATH/.venv/bin/python`` or
``venv/bin/python`` when present, else this interpreter. It needs ComfyUI's requirements and the
pack's (``requirements.txt``), not this package: ComfyUI imports the engine from the pack folder.
Starting the server and talking to it: ``comfy_e2e.py`` (shared with ``test_e2e_soak.py``).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from comfy_e2e import (
    API_DIR,
    COMFYUI,
    FACE_FILE,
    REPO,
    SKIP_REASON,
    Client,
    api,
    comfyui_python,
    start_comfyui,
)
from PIL import Image

from oldphoto_core.models import BUNDLED_LABEL

HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI, reason=SKIP_REASON),
]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Client:
    with start_comfyui(tmp_path_factory) as client:
        yield client


@pytest.fixture(scope="module")
def object_info(comfy) -> dict:
    status, info = comfy.request("/object_info", timeout=120)
    assert status == 200
    return info


def _ours() -> dict:
    """Our node ids and display names, read from the sources' classes without importing them
    into this process' ``nodes`` namespace (ComfyUI's own module has that name)."""
    name = "oldphoto_e2e_pack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name].NODE_DISPLAY_NAME_MAPPINGS


def test_object_info_lists_every_node(comfy, object_info):
    ours = _ours()
    missing = sorted(set(ours) - set(object_info))
    assert not missing, f"not registered: {missing}\n{comfy.log_tail()}"
    for node_id, display in ours.items():
        info = object_info[node_id]
        assert info["display_name"] == display
        assert info["category"].startswith("loaders/old photo" if node_id.endswith("Loader")
                                           else "image/restoration/old photo")
        assert info["python_module"].startswith("custom_nodes.")
    vaes = [v for v in object_info["OldPhotoVAELoader"]["input"]["required"]["model_name"][0]
            if not v.startswith(BUNDLED_LABEL)]  # the bundled set's entries come after
    assert sorted(vaes) == sorted(f"Global/checkpoints/restoration/{v}/latest_net_G.pth"
                                  for v in ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch"))
    # the face model lives in the folder from extra_model_paths.yaml: that path was kept
    faces = object_info["OldPhotoFaceModelLoader"]["input"]["required"]["model_name"][0]
    assert faces == [FACE_FILE]
    assert "OLDPHOTO_LATENT" in object_info["OldPhotoVAEEncodeOld"]["output"]


# nodes of the frontend only (comments on the canvas): not in /object_info, never in a prompt
FRONTEND_ONLY = {"Note", "MarkdownNote"}


def test_core_nodes_of_the_workflows_match_comfyui(object_info):
    for path in sorted((REPO / "example_workflows").glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"] in FRONTEND_ONLY:
                continue
            info = object_info.get(node["type"])
            assert info is not None, f"{path.name}: {node['type']} unknown to ComfyUI"
            assert [o["type"] for o in node["outputs"]] == info["output"]
            declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
            for slot in node["inputs"]:
                assert declared[slot["name"]][0] in (slot["type"], "*")


def test_template_browser_serves_the_ui_workflows(comfy):
    status, templates = comfy.request("/workflow_templates")
    assert status == 200
    names = set(templates.get("oldphoto", []))
    expected = {p.stem for p in (REPO / "example_workflows").glob("*.json")}
    assert names == expected  # the API twins (example_workflows/api/) are not offered as templates
    status, wf = comfy.request("/api/workflow_templates/oldphoto/oldphoto_all_in_one.json")
    assert status == 200 and wf["nodes"]


def _chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((p for n in ("chromium", "chromium-browser", "google-chrome",
                             "google-chrome-stable") if (p := shutil.which(n))), None)


def test_ui_workflows_load_in_the_real_frontend(comfy, object_info):
    """Each UI workflow loads in ComfyUI's editor (headless Chromium) with every node known, and
    the frontend's own API export of it equals our API twin, titles included (frontend-only
    widgets aside)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (or $CHROMIUM): the UI workflows were not loaded into "
                    "the real frontend")
    files = sorted((REPO / "example_workflows").glob("*.json"))
    run = subprocess.run([comfyui_python(), str(HERE / "frontend_check.py"), chromium, comfy.url,
                          *map(str, files)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for path in files:
        got = result[path.name]
        assert got["unknown"] == [], path.name
        assert got["nodes"] == len(json.loads(path.read_text())["nodes"])
        exported = {}
        for nid, node in got["output"].items():
            spec = object_info[node["class_type"]]["input"]
            declared = {**spec.get("required", {}), **spec.get("optional", {})}
            exported[nid] = {"class_type": node["class_type"], "_meta": node.get("_meta"),
                             "inputs": {k: v for k, v in node["inputs"].items() if k in declared}}
        twin = {k: {"class_type": v["class_type"], "_meta": v.get("_meta"), "inputs": v["inputs"]}
                for k, v in api(path.stem).items()}
        assert exported == twin, path.name


def _overlap(a: list[float], b: list[float]) -> bool:
    """Whether two ``[x, y, width, height]`` rectangles overlap."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_ui_workflows_fit_the_screen_in_the_real_frontend(comfy, tmp_path_factory):
    """Each UI workflow at the editor's "Fit view" in a 1920x1080 window: drawn with text
    (scale >= 0.6), no node over another, no widget text cut, no node's text under the
    minimap, sizes as saved. Screenshots go to ``$OLDPHOTO_WORKFLOW_SHOTS`` (else
    ``workflow_shots`` under pytest's ``--basetemp``), with ``layout.json``: what the editor
    drew. The same layout is checked without a browser by ``tests/nodes``."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (or $CHROMIUM): no screenshots of the UI workflows")
    shots = Path(os.environ.get("OLDPHOTO_WORKFLOW_SHOTS") or
                 tmp_path_factory.mktemp("workflow_shots"))
    files = sorted((REPO / "example_workflows").glob("*.json"))
    run = subprocess.run([comfyui_python(), str(HERE / "frontend_layout.py"), chromium,
                          comfy.url, str(shots), *map(str, files)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    (shots / "layout.json").write_text(json.dumps(result, indent=1))
    print(f"\nscreenshots in {shots}")
    for path in files:
        got, saved = result[path.name], json.loads(path.read_text())["nodes"]
        print(f"  {path.stem}: scale {got['scale']:.2f}, canvas {got['canvas'][2:]}")
        assert got["scale"] >= 0.6 and not got["low_quality"], (path.name, got["scale"])
        assert got["truncated"] == [], (path.name, got["truncated"])
        assert {n["id"]: n["size"] for n in got["nodes"]} == \
            {n["id"]: n["size"] for n in saved}, f"{path.name}: the editor resized nodes"
        for i, a in enumerate(got["nodes"]):
            for b in got["nodes"][i + 1:]:
                assert not _overlap(a["rect"], b["rect"]), f"{path.name}: {a['id']} on {b['id']}"
            for o in got["overlays"]:
                assert not _overlap(a["text"], o["rect"]), f"{path.name}: {a['id']} under {o}"


def _image(comfy: Client, item: dict) -> np.ndarray:
    path = comfy.base / "output" / item.get("subfolder", "") / item["filename"]
    assert path.is_file(), f"missing output {path}"
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255


def _check_outputs(comfy: Client, prompt: dict, hist: dict) -> dict[str, list[np.ndarray]]:
    assert hist["status"]["status_str"] == "success", json.dumps(hist["status"], indent=1)[:4000]
    saved = {}
    for node_id, node in prompt.items():
        if node["class_type"] == "SaveImage":
            items = hist["outputs"][node_id]["images"]
            assert len(items) == 1
            saved[node["inputs"]["filename_prefix"]] = [_image(comfy, i) for i in items]
    return saved


WORKFLOWS = sorted(p.name.removesuffix(".api.json") for p in API_DIR.glob("*.api.json"))


@pytest.mark.parametrize("name", WORKFLOWS)
def test_api_workflow_runs(comfy, name):
    prompt = api(name)
    if not _has_dlib():
        for node in prompt.values():
            if node["class_type"] == "OldPhotoFaceDetectorLoader":
                pytest.skip("dlib-bin / face-recognition-models are not installed in ComfyUI's "
                            f"Python: {name} (face detection) was not run")
            if node["class_type"] == "OldPhotoRestore":
                node["inputs"]["faces"] = "off"
    hist = comfy.run(prompt)
    saved = _check_outputs(comfy, prompt, hist)
    assert saved, "the workflow saved nothing"
    for prefix, images in saved.items():
        for img in images:
            assert img.shape == (256, 256, 3), (prefix, img.shape)
            assert np.isfinite(img).all()
            if prefix.endswith("mask"):
                assert set(np.unique(np.round(img * 255))) <= {0.0, 255.0}
                assert (img[..., 0] == img[..., 1]).all()
            else:
                assert float(img.std()) > 0.01, f"{prefix}: a constant image"
    texts = {nid: hist["outputs"][nid]["text"] for nid, n in prompt.items()
             if n["class_type"] == "PreviewAny"}
    for text in texts.values():
        value = json.loads(text[0])
        assert isinstance(value, list) and value and isinstance(value[0], dict)
    if name == "oldphoto_make_training_pairs":
        clean, old = saved["oldphoto_pairs/clean"][0], saved["oldphoto_pairs/old"][0]
        assert np.abs(clean - old).mean() > 0.005  # damaged
    if name == "oldphoto_all_in_one":
        info = json.loads(next(iter(texts.values()))[0])
        assert info[0]["mode"] in ("quality", "scratch")


@functools.cache
def _has_dlib() -> bool:
    code = "import importlib.util as u; raise SystemExit(0 if u.find_spec('dlib') and " \
           "u.find_spec('face_recognition_models') else 1)"
    return subprocess.run([comfyui_python(), "-c", code], check=False).returncode == 0


def test_face_nodes_enhance_a_real_face(comfy):
    if not _has_dlib():
        pytest.skip("dlib-bin / face-recognition-models are not installed in ComfyUI's Python: "
                    "the face nodes were not run on a real face")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "old_photo.png"}},
        "2": {"class_type": "OldPhotoFaceDetectorLoader",
              "inputs": {"backend": "dlib", "insightface_pack": "buffalo_l", "threshold": 0.5}},
        # face_size: a prompt saved when 'Detect Faces' had it; ComfyUI drops the input
        "3": {"class_type": "OldPhotoFaceDetect",
              "inputs": {"image": ["1", 0], "face_detector": ["2", 0], "face_size": "256"}},
        "4": {"class_type": "OldPhotoFaceModelLoader",
              "inputs": {"model_name": FACE_FILE, "face_size": "auto"}},
        "5": {"class_type": "OldPhotoFaceEnhance", "inputs": {"faces": ["3", 0],
                                                              "face_model": ["4", 0]}},
        "6": {"class_type": "OldPhotoBlend", "inputs": {"image": ["1", 0], "faces": ["5", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0],
                                                    "filename_prefix": "oldphoto/faces"}},
    }
    hist = comfy.run(prompt)
    out = _check_outputs(comfy, prompt, hist)["oldphoto/faces"][0]
    src = np.asarray(Image.open(comfy.base / "input" / "old_photo.png").convert("RGB"),
                     dtype=np.float32) / 255
    changed = np.abs(out - src).max(axis=-1) > 2 / 255
    assert out.shape == src.shape
    assert 0.005 < changed.mean() < 0.9, "the face was not blended in (or everything changed)"


def _single_output(prompt: dict) -> dict:
    """The prompt without the scratch-mask preview, so that the restored image is its only
    output (ComfyUI runs the valid outputs of a partly broken prompt and answers 200)."""
    drop = {k for k, v in prompt.items() if v["class_type"] == "MaskToImage"}
    drop |= {k for k, v in prompt.items() if v["class_type"] == "SaveImage"
             and v["inputs"]["images"][0] in drop}
    return {k: v for k, v in prompt.items() if k not in drop}


def test_broken_prompts_get_clear_errors_and_the_server_stays_up(comfy):
    good = _single_output(api("oldphoto_scratch_restoration"))
    map_id = next(k for k, v in good.items() if v["class_type"] == "OldPhotoLatentMap")
    vae_id = next(k for k, v in good.items() if v["class_type"] == "OldPhotoVAELoader")
    load_id = next(k for k, v in good.items() if v["class_type"] == "LoadImage")

    # a wrong type: the IMAGE into the latent input
    wrong = copy.deepcopy(good)
    wrong[map_id]["inputs"]["latent"] = [load_id, 0]
    status, answer = comfy.request("/prompt", {"prompt": wrong})
    assert status == 400
    assert answer["error"]["message"] == "Prompt outputs failed validation"
    errors = answer["node_errors"][map_id]["errors"]
    assert errors[0]["type"] == "return_type_mismatch"
    assert "OLDPHOTO_LATENT" in errors[0]["details"] and "IMAGE" in errors[0]["details"]

    # a missing model file
    missing = copy.deepcopy(good)
    missing[vae_id]["inputs"]["model_name"] = "VAE_A_quality/missing.pth"
    status, answer = comfy.request("/prompt", {"prompt": missing})
    assert status == 400
    details = json.dumps(answer["node_errors"][vae_id])
    assert "not found" in details and "models/oldphoto" in details

    # a file of the wrong kind
    kind = copy.deepcopy(good)
    kind[vae_id]["inputs"]["model_name"] = \
        "Global/checkpoints/restoration/mapping_scratch/latest_net_mapping_net.pth"
    status, answer = comfy.request("/prompt", {"prompt": kind})
    assert status == 400 and "Load Old Photo Mapping" in json.dumps(answer["node_errors"])

    # valid graph, failing at run time: the scratch mapping without its mask
    nomask = copy.deepcopy(good)
    del nomask[map_id]["inputs"]["mask"]
    hist = comfy.run(nomask)
    assert hist["status"]["status_str"] == "error"
    text = json.dumps(hist["status"]["messages"])
    assert "needs the scratch mask" in text

    assert comfy.proc.poll() is None and comfy.alive()
    status, info = comfy.request("/object_info/OldPhotoRestore")
    assert status == 200 and "OldPhotoRestore" in info


def test_server_log_has_no_import_failure(comfy):
    log = comfy.log_tail(10**7)
    assert "oldphoto" in log
    bad = [line for line in log.splitlines() if "IMPORT FAILED" in line and "oldphoto" in line]
    assert not bad, "\n".join(bad)
