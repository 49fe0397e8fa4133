"""Fixtures of the face tests: models, detectors, images and a tiny SCRFD-shaped ONNX model.

The synthetic 256 px face weights (92 M parameters, ~4 s to build) are built once per session.
Functional tests use a small randomly initialised generator instead (same code, ``base=4``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from oldphoto_core.arch.spade import SPADEFaceGenerator
from oldphoto_core.loading import model_from_state_dict

REPO = Path(__file__).resolve().parents[2]
STRIDES = (8, 16, 32)


def to_nchw(image: np.ndarray) -> torch.Tensor:
    """``[H, W, C]`` uint8 -> ``[1, C, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


def to_u8(image: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` float in [0, 1] -> ``[H, W, C]`` uint8, rounding half to even."""
    return np.rint(image.double().clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(path).convert("RGB"))


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (insightface must never download)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def face_case(parity: Path) -> tuple[Path, dict]:
    """The parity kit's ``pipeline/face`` folder and its ``run.json``."""
    folder = parity / "pipeline" / "face"
    if not folder.is_dir():
        pytest.skip(f"{folder} not in this parity kit")
    return folder, json.loads((folder / "run.json").read_text())


@pytest.fixture(scope="session")
def face_model(face_case, synth):
    """The face generator with the synthetic weights the pipeline run used (built once); its
    size (256 or 512) is read from the run's aligned crops."""
    folder, run = face_case
    kit = folder.parent.parent
    size = load_rgb(kit / run["files"]["aligned_1"]).shape[0]
    name = f"face_spade_{size}"
    sd = synth(f"manifests/{name}.json", run["checkpoints_written"][name]["seed"])
    return model_from_state_dict(sd, source=f"synthetic {name}", expect="face_enhancer")


@pytest.fixture(scope="session")
def tiny_enhancer() -> SPADEFaceGenerator:
    """A small generator with the same structure (fast; random weights, eval mode)."""
    torch.manual_seed(0)
    model = SPADEFaceGenerator(base=4).eval().requires_grad_(False)
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="session")
def dlib_detector():
    from oldphoto_core.faces import make_face_detector

    return make_face_detector("dlib")


@pytest.fixture(scope="session")
def samples() -> Path:
    env = os.environ.get("OLDPHOTO_SAMPLES_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "samples"
    if not path.is_dir():
        pytest.skip(f"sample photos not found at {path} (set OLDPHOTO_SAMPLES_DIR)")
    return path


@pytest.fixture(scope="session")
def insightface_t1() -> np.ndarray:
    """insightface's bundled ``t1.jpg``, read from the installed package (not copied)."""
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations, "insightface is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return load_rgb(path)


# --- a tiny SCRFD-shaped ONNX model -------------------------------------------------------------
# Same signature as det_10g.onnx: input "input.1" [1, 3, h, w]; nine outputs (scores, boxes,
# keypoints at strides 8, 16, 32; 2 anchors per cell). Score per cell = sigmoid(gain * mean of the
# normalised input over the cell + bias); boxes and keypoints are constant distances (in strides)
# from the anchor centre. With gain 0 at strides 8 and 16, only 32 px cells can fire.

TINY_GAINS = (0.0, 0.0, 10.0)
TINY_BIASES = (-10.0, -10.0, -5.0)
TINY_DIST = (1.0, 1.5, 2.0, 2.5)  # left, top, right, bottom
TINY_KPS = (-0.5, -0.5, 0.5, -0.5, 0.0, 0.0, -0.4, 0.6, 0.4, 0.6)


def build_tiny_scrfd(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, value) -> str:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    const("shape_n1", np.array([-1, 1], np.int64))
    const("zero", 0.0)
    const("dist", np.array([TINY_DIST], np.float32))
    const("kps", np.array([TINY_KPS], np.float32))
    mk = helper.make_node
    for s, gain, bias in zip(STRIDES, TINY_GAINS, TINY_BIASES, strict=True):
        const(f"g{s}", gain)
        const(f"b{s}", bias)
        nodes += [
            mk("AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
            mk("ReduceMean", [f"pool{s}"], [f"mean{s}"], axes=[1], keepdims=1),
            mk("Mul", [f"mean{s}", f"g{s}"], [f"mg{s}"]),
            mk("Add", [f"mg{s}", f"b{s}"], [f"lg{s}"]),
            mk("Sigmoid", [f"lg{s}"], [f"sg{s}"]),
            mk("Transpose", [f"sg{s}"], [f"tr{s}"], perm=[0, 2, 3, 1]),
            mk("Concat", [f"tr{s}", f"tr{s}"], [f"cat{s}"], axis=3),  # 2 anchors per cell
            mk("Reshape", [f"cat{s}", "shape_n1"], [f"score_{s}"]),
            mk("Mul", [f"score_{s}", "zero"], [f"z{s}"]),
            mk("Add", [f"z{s}", "dist"], [f"bbox_{s}"]),
            mk("Add", [f"z{s}", "kps"], [f"kps_{s}"]),
        ]
    widths = {"score": 1, "bbox": 4, "kps": 10}
    outputs = [helper.make_tensor_value_info(f"{k}_{s}", TensorProto.FLOAT, [f"n_{k}{s}", w])
               for k, w in widths.items() for s in STRIDES]
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])
    graph = helper.make_graph(nodes, "tiny_scrfd", [inp], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="oldphoto-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_expected(cell_row: int, cell_col: int, level: int, det_scale: float = 1.0):
    """Box, five points and score the tiny model gives for a uniform 32 px cell of ``level``."""
    cx, cy = cell_col * 32.0, cell_row * 32.0
    d = np.array(TINY_DIST) * 32
    box = np.array([cx - d[0], cy - d[1], cx + d[2], cy + d[3]]) / det_scale
    kps = (np.array([cx, cy]) + np.array(TINY_KPS).reshape(5, 2) * 32) / det_scale
    mean = (level - 127.5) / 128.0
    score = 1 / (1 + np.exp(-(TINY_GAINS[2] * mean + TINY_BIASES[2])))
    return box, kps, score


@pytest.fixture(scope="session")
def tiny_scrfd_root(tmp_path_factory) -> Path:
    """An insightface root holding ``models/buffalo_l/det_10g.onnx`` = the tiny model."""
    root = tmp_path_factory.mktemp("insightface")
    build_tiny_scrfd(root / "models" / "buffalo_l" / "det_10g.onnx")
    return root


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """Plain helper functions (conftest modules are not importable under importlib mode)."""
    return SimpleNamespace(to_nchw=to_nchw, to_u8=to_u8, psnr=psnr, load_rgb=load_rgb,
                           tiny_expected=tiny_expected)
