"""Node options around the networks: the precision widget reaches them, and the model folders
the pack registers leave other packs' files in the shared ``insightface`` folder alone."""

from __future__ import annotations

import types

import pytest
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, all_in_one, comfy_compat
from oldphoto_pack.nodes import restoration as restoration_nodes
from oldphoto_pack.nodes.all_in_one import OldPhotoRestore
from oldphoto_pack.nodes.restoration import OldPhotoVAEEncodeOld

from oldphoto_core.errors import InputError
from oldphoto_core.pipeline import Restorer
from oldphoto_core.runtime import numerics

M = NODE_CLASS_MAPPINGS


# -- precision ------------------------------------------------------------------------------

def test_precision_reaches_the_networks(use_models, handle, images, monkeypatch):
    seen = []
    real = restoration_nodes.encode_old

    def recording(*args, **kwargs):
        seen.append(numerics._PRECISION.get())
        return real(*args, **kwargs)

    monkeypatch.setattr(restoration_nodes, "encode_old", recording)
    vae = handle("vae", "VAE_A_quality.pth")
    OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    OldPhotoVAEEncodeOld().encode(images, vae, "resize", None, "tf32")
    assert seen == ["exact", "tf32"]
    with pytest.raises(InputError, match="precision"):
        OldPhotoVAEEncodeOld().encode(images, vae, "resize", None, "fp16")
    precisions = []
    real_restore = Restorer.restore
    monkeypatch.setattr(Restorer, "restore", lambda self, *a, **k: precisions.append(
        self.precision) or real_restore(self, *a, **k))
    OldPhotoRestore().restore(images, "off", False, "off", "auto", "oldphoto", "tf32")
    assert precisions == ["tf32"]
    (restorer,) = all_in_one._restorers.values()
    assert restorer.precision == "exact"  # the cached Restorer keeps no run's setting


@pytest.mark.parametrize("node_id", ["OldPhotoDetectScratches", "OldPhotoVAEEncodeOld",
                                     "OldPhotoLatentMap", "OldPhotoVAEDecodeClean",
                                     "OldPhotoFaceEnhance", "OldPhotoRestore"])
def test_nodes_that_run_networks_offer_precision(node_id):
    choices, opts = M[node_id].INPUT_TYPES()["optional"]["precision"]
    assert choices == ("exact", "tf32") and opts["default"] == "exact"  # optional: old prompts


# -- the shared insightface folder ---------------------------------------------------------

def _fake_folder_paths(tmp_path, known: dict) -> types.SimpleNamespace:
    """``folder_paths`` as far as the registration uses it (same rules as ComfyUI's)."""
    fp = types.SimpleNamespace(models_dir=str(tmp_path), folder_names_and_paths=known)

    def add_model_folder_path(name, path, is_default=False):
        if name in known:
            if path not in known[name][0]:
                known[name][0].append(path)
        else:
            known[name] = ([path], set())

    fp.add_model_folder_path = add_model_folder_path
    return fp


def test_other_packs_keep_their_insightface_files(tmp_path, monkeypatch):
    """``models/insightface`` is shared (face swap, IP-Adapter FaceID ...): an empty extension
    set means "every file" to ComfyUI, and narrowing it to ``.onnx`` would hide the other packs'
    files from their loaders."""
    yaml = str(tmp_path / "from_yaml")
    fp = _fake_folder_paths(tmp_path, {"insightface": ([yaml], set()),
                                       "oldphoto": ([yaml], set())})
    monkeypatch.setattr(comfy_compat, "_fp", fp)
    comfy_compat.register_model_folders()
    comfy_compat.register_model_folders()  # idempotent
    paths, exts = fp.folder_names_and_paths["insightface"]
    assert paths == [yaml, str(tmp_path / "insightface")] and exts == set()
    paths, exts = fp.folder_names_and_paths["oldphoto"]
    assert paths == [yaml, str(tmp_path / "oldphoto")] and exts == comfy_compat.MODEL_EXTENSIONS
    other = {"insightface": (["/x"], {".onnx", ".pth"})}  # as another pack registered it
    fp = _fake_folder_paths(tmp_path, other)
    monkeypatch.setattr(comfy_compat, "_fp", fp)
    comfy_compat.register_model_folders()
    assert fp.folder_names_and_paths["insightface"][1] == {".onnx", ".pth"}
