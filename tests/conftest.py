"""Shared fixtures: the parity kit location and its synthetic-weight generator.

The parity kit is read from ``$OLDPHOTO_PARITY_DIR`` (default ``../shared/parity`` beside the
repository). When the variable is set and the folder is missing, tests fail; when it is unset
and the default is missing, parity tests are skipped with the reason printed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _share_threads() -> None:
    """Under pytest-xdist (``-n``), split the machine's threads between the workers.

    Each worker would otherwise run torch (and the CLI subprocesses and Ray workers it starts,
    which read ``OMP_NUM_THREADS``) on every core, and two workers on two cores would fight
    for them. ``OMP_NUM_THREADS`` when set is the budget, else the CPU count.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    total = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    threads = max(1, total // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


_share_threads()


def _register(name: str):
    """Make ``tests/<name>.py`` importable as ``name`` from any test module (under
    ``--import-mode=importlib`` the tests folder is not on ``sys.path``): ``numeric_bounds``
    (the rounding-error bounds behind every tolerance), ``model_sets`` (tiny model sets)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(
            f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_register("numeric_bounds")
_register("model_sets")


def parity_dir() -> Path | None:
    env = os.environ.get("OLDPHOTO_PARITY_DIR")
    if env:
        p = Path(env)
        if not p.is_dir():
            raise RuntimeError(f"OLDPHOTO_PARITY_DIR={env} is not a folder")
        return p
    default = REPO.parent / "shared" / "parity"
    return default if default.is_dir() else None


def _require_parity() -> Path:
    p = parity_dir()
    if p is None:
        pytest.skip("parity kit not found: set OLDPHOTO_PARITY_DIR (default ../shared/parity)")
    return p


@pytest.fixture(scope="session")
def parity() -> Path:
    """The parity kit folder."""
    return _require_parity()


@pytest.fixture(scope="session")
def synth(parity: Path):
    """``synth_from_manifest_file`` of the kit's own ``synth.py`` (imported by path)."""
    spec = importlib.util.spec_from_file_location("oldphoto_parity_synth", parity / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def make(manifest: str | Path, seed: int) -> dict[str, torch.Tensor]:
        path = Path(manifest)
        return mod.synth_from_manifest_file(path if path.is_absolute() else parity / path, seed)

    return make


@pytest.fixture(scope="session")
def manifests(parity: Path) -> dict[str, dict]:
    """Every manifest of the kit by name."""
    files = sorted((parity / "manifests").glob("*.json"))
    return {p.stem: json.loads(p.read_text()) for p in files}


def meta_state_dict(keys: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A state dict with the manifest's shapes on the meta device (no memory, for detection)."""
    return {k: torch.empty(s, device="meta", dtype=torch.int64 if k.endswith(
        "num_batches_tracked") else torch.float32) for k, s in keys.items()}


@pytest.fixture
def meta_sd():
    return meta_state_dict


def pytest_generate_tests(metafunc):
    """Parametrise ``network_case`` with every case file of the parity kit (discovered)."""
    if "network_case" in metafunc.fixturenames:
        p = parity_dir()
        cases = sorted((p / "networks").glob("*.json")) if p else []
        metafunc.parametrize("network_case", cases, ids=[c.stem for c in cases])
    if "global_run" in metafunc.fixturenames:
        # pipeline runs of the reference's Global/test.py (the face run is tested elsewhere)
        p = parity_dir()
        runs = [r.parent for r in sorted((p / "pipeline").glob("*/run.json"))] if p else []
        runs = [r for r in runs if any("test.py" in c["argv"] for c in
                                       json.loads((r / "run.json").read_text())["commands"])]
        metafunc.parametrize("global_run", runs, ids=[r.name for r in runs])


def pytest_sessionfinish(session, exitstatus):
    # A run that collected nothing must not look green.
    if exitstatus == 0 and session.testscollected == 0:
        session.exitstatus = 5


@pytest.fixture
def tiny_bundled_set(_no_bundled_set, tmp_path_factory, monkeypatch) -> dict[str, Path]:
    """A tiny model set installed as *the bundled default set* for this test (the package's
    ``bundled_dir`` points at it); returns ``role -> file``. Also runs the test from an empty
    working folder with ``$OLDPHOTO_MODELS`` unset, so no real checkpoints are found."""
    import oldphoto_core.models as models
    folder = tmp_path_factory.mktemp("bundled")
    files = _register("model_sets").write_tiny_set(folder)
    monkeypatch.setattr(models, "bundled_dir", lambda: folder)
    monkeypatch.delenv("OLDPHOTO_MODELS", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    return files


@pytest.fixture(autouse=True)
def _no_bundled_set(monkeypatch, tmp_path_factory):
    """Tests see no bundled default set unless they install one (``tiny_bundled_set``): what
    a test expects of "no checkpoints found" must not depend on whether this checkout ships
    trained weights. The real set is tested through its own path."""
    import oldphoto_core.models as models
    empty = tmp_path_factory.getbasetemp() / "no_bundled_set"
    empty.mkdir(exist_ok=True)
    monkeypatch.setattr(models, "bundled_dir", lambda: empty)

