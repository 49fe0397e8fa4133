"""Models under ComfyUI's model management, with a fake ``comfy.model_management`` and
``ModelPatcher`` put into ``comfy_compat`` (the only module that talks to ComfyUI).

The fake keeps ComfyUI's ownership rules (``comfy/model_management.py``): its list of loaded
models refers to the patchers weakly (``LoadedModel``), ``unload_all_models`` detaches them to
their offload device, and whoever holds a patcher keeps the weights. ``/free`` with
``unload_models`` and ``free_memory`` is ``unload_all_models()`` plus dropping the node output and
object caches (``PromptExecutor.reset``) and a garbage collection: :func:`simulate_free`.

Also here: batches in chunks that fit, the out-of-memory fallback of every node that runs a
network, the ``precision`` input, and the registration of the shared insightface folder.
"""

from __future__ import annotations

import gc
import json
import os
import weakref

import pytest
import torch
from numeric_bounds import stack_tolerance
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, all_in_one, comfy_compat, faces, loaders
from oldphoto_pack.nodes import restoration as restoration_nodes
from oldphoto_pack.nodes.all_in_one import OldPhotoRestore
from oldphoto_pack.nodes.face_set import FaceSet
from oldphoto_pack.nodes.restoration import OldPhotoVAEEncodeOld

from oldphoto_core.models import ROLES
from oldphoto_core.pipeline import Restorer

P = {role: r.published_path for role, r in ROLES.items()}
M = NODE_CLASS_MAPPINGS


class FakePatcher:
    """What the pack (and the fake management) use of ``comfy.model_patcher.ModelPatcher``."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.size = size
        self.detached = 0

    def model_size(self):
        return self.size

    def detach(self, unpatch_all=True):
        self.model.to(self.offload_device)
        self.detached += 1
        return self.model


class _LoadedModel:
    """As ComfyUI's ``LoadedModel``: a weak reference to the patcher."""

    def __init__(self, patcher):
        self._model = weakref.ref(patcher)
        self.device = patcher.load_device

    @property
    def model(self):
        return self._model()


class FakeModelManagement:
    """``comfy.model_management`` as far as the pack uses it."""

    OOM_EXCEPTION = torch.cuda.OutOfMemoryError

    def __init__(self):
        self.current_loaded_models: list[_LoadedModel] = []
        #: per load_models_gpu call: (the patchers, weakly: ComfyUI holds them so), memory
        #: required, force_full_load
        self.loads: list[tuple[list, int, bool]] = []
        self.interrupted = False

    def get_torch_device(self):
        return torch.device("cpu")

    def unet_offload_device(self):
        return torch.device("cpu")

    def intermediate_device(self):
        return torch.device("cpu")

    def get_free_memory(self, dev=None, torch_free_too=False):
        return 1 << 40

    def free_memory(self, memory_required, device, keep_loaded=()):
        return []

    def soft_empty_cache(self, force=False):
        pass

    def load_models_gpu(self, models, memory_required=0, force_patch_weights=False,
                        minimum_memory_required=None, force_full_load=False):
        assert not torch.is_inference_mode_enabled()  # weights must not become inference tensors
        self.loads.append(([weakref.ref(p) for p in models], memory_required, force_full_load))
        for p in models:
            if not any(lm.model is p for lm in self.current_loaded_models):
                self.current_loaded_models.insert(0, _LoadedModel(p))
            p.model.to(p.load_device)

    def loaded_models(self, only_currently_used=False):
        return [lm.model for lm in self.current_loaded_models if lm.model is not None]

    def last_load(self) -> tuple[list, int, bool]:
        refs, memory_required, full = self.loads[-1]
        return [r() for r in refs], memory_required, full

    def unload_all_models(self):
        for lm in self.current_loaded_models:
            if lm.model is not None:
                lm.model.detach()
        self.current_loaded_models.clear()

    def interrupt_current_processing(self, value=True):
        self.interrupted = value

    def throw_exception_if_processing_interrupted(self):
        if self.interrupted:
            self.interrupted = False
            raise comfy_compat.Interrupted("interrupted")


@pytest.fixture
def comfy_mm(monkeypatch) -> FakeModelManagement:
    mm = FakeModelManagement()
    monkeypatch.setattr(comfy_compat, "_mm", mm)
    monkeypatch.setattr(comfy_compat, "_ModelPatcher", FakePatcher)
    assert comfy_compat.host_manages_models()
    return mm


@pytest.fixture
def disk_loads(monkeypatch) -> list[str]:
    """Every checkpoint read from disk by the loaders' cache."""
    read = []
    real = loaders.load_model

    def counting(path, **kwargs):
        read.append(os.path.basename(os.path.dirname(path)))
        return real(path, **kwargs)

    monkeypatch.setattr(loaders, "load_model", counting)
    return read


def simulate_free(mm: FakeModelManagement) -> None:
    """``POST /free {"unload_models": true, "free_memory": true}`` once the caller dropped what
    ComfyUI's caches held (node outputs, node instances)."""
    mm.unload_all_models()
    gc.collect()


# -- the loaders hand ComfyUI a patcher; ComfyUI owns it --------------------------------------

def test_loaders_hand_comfyui_a_patcher(use_models, comfy_mm, images):
    (vae,) = M["OldPhotoVAELoader"]().load(P["vae_a"])
    patcher = vae.patcher
    assert isinstance(patcher, FakePatcher) and patcher.model is vae.descriptor.model
    weights = sum(t.numel() * t.element_size() for t in patcher.model.state_dict().values())
    assert patcher.model_size() == weights
    assert (patcher.load_device.type, patcher.offload_device.type) == ("cpu", "cpu")
    OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    models, memory_required, full = comfy_mm.last_load()
    assert models == [patcher] and full  # our layers cannot run partially loaded
    assert memory_required > 0  # working memory of the run, on top of the weights
    assert comfy_mm.loaded_models() == [patcher]  # ComfyUI keeps it loaded after the run
    assert not any(p.is_inference() for p in patcher.model.parameters())


def test_after_a_free_the_loader_cache_keeps_nothing_and_the_next_run_reloads(
        use_models, comfy_mm, images, disk_loads):
    loader = M["OldPhotoMappingLoader"]()
    (mapping,) = loader.load(P["mapping_quality"])
    (again,) = loader.load(P["mapping_quality"])
    assert again.network is mapping.network and disk_loads == ["mapping_quality"]
    (vae,) = M["OldPhotoVAELoader"]().load(P["vae_a"])
    (lat,) = OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    (clean,) = M["OldPhotoLatentMap"]().map(lat, mapping, 0)
    weights = weakref.ref(mapping.descriptor.model)
    patcher = weakref.ref(mapping.patcher)
    assert mapping.patcher in comfy_mm.loaded_models()

    del mapping, again, vae  # ComfyUI drops its node outputs (free_memory: executor reset)
    simulate_free(comfy_mm)
    assert weights() is None and patcher() is None  # nothing of ours kept them
    assert comfy_mm.loaded_models() == []

    (mapping,) = loader.load(P["mapping_quality"])  # the next run reads the file again
    assert disk_loads == ["mapping_quality", "VAE_A_quality", "mapping_quality"]
    (clean2,) = M["OldPhotoLatentMap"]().map(lat, mapping, 0)
    assert torch.equal(clean["samples"], clean2["samples"])


def test_unload_alone_keeps_the_weights_of_cached_outputs(use_models, comfy_mm, images,
                                                          disk_loads):
    """"Unload models" without freeing the cache: as ComfyUI's own models, ours leave the
    device but the node outputs that hold them stay valid."""
    (vae,) = M["OldPhotoVAELoader"]().load(P["vae_a"])
    OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    comfy_mm.unload_all_models()
    gc.collect()
    assert vae.patcher.detached == 1 and comfy_mm.loaded_models() == []
    OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    assert comfy_mm.loaded_models() == [vae.patcher] and disk_loads == ["VAE_A_quality"]


def test_all_in_one_models_belong_to_the_node_instance(use_models, comfy_mm, images,
                                                       disk_loads):
    node = OldPhotoRestore()
    out, _, _ = node.restore(images, "off", False, "off", "auto", "oldphoto")
    used = {n.patcher for n in node._networks}
    assert len(used) == 3 and set(comfy_mm.last_load()[0]) == used
    weights = [weakref.ref(n.descriptor.model) for n in node._networks]
    node.restore(images, "off", False, "off", "auto", "oldphoto")
    assert sorted(disk_loads) == ["VAE_A_quality", "VAE_B_quality", "mapping_quality"]
    (restorer,) = all_in_one._restorers.values()
    assert restorer.store.files == {}  # the cached Restorer holds no model

    del node, used  # ComfyUI drops its object cache (the node instances)
    simulate_free(comfy_mm)
    assert all(w() is None for w in weights)
    out2, _, _ = OldPhotoRestore().restore(images, "off", False, "off", "auto", "oldphoto")
    assert len(disk_loads) == 6 and torch.equal(out, out2)


def test_without_comfyui_the_loader_cache_keeps_the_models(use_models, disk_loads):
    """Plain Python (scripts, other hosts): nothing else would keep them, so the cache does."""
    assert not comfy_compat.host_manages_models()
    (vae,) = M["OldPhotoVAELoader"]().load(P["vae_a"])
    weights = weakref.ref(vae.descriptor.model)
    del vae
    gc.collect()
    assert weights() is not None
    M["OldPhotoVAELoader"]().load(P["vae_a"])
    assert disk_loads == ["VAE_A_quality"]


# -- batches in chunks; out of device memory -----------------------------------------------

def test_batches_run_in_chunks_that_fit(handle, monkeypatch, progress):
    images = torch.rand(5, 32, 36, 3, generator=torch.Generator().manual_seed(3))
    vae = handle("vae", "VAE_A_quality.pth")
    (whole,) = OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    assert progress[-1].updates == [5]  # all five fit at once
    sizes = []
    real = restoration_nodes.encode_old

    def recording(image, *args, **kwargs):
        sizes.append(image.shape[0])
        return real(image, *args, **kwargs)

    monkeypatch.setattr(restoration_nodes, "encode_old", recording)
    per_item = restoration_nodes.item_bytes("quality", 32 * 36)
    monkeypatch.setattr(comfy_compat, "free_bytes", lambda device: int(2.5 * per_item / 0.9))
    (chunked,) = OldPhotoVAEEncodeOld().encode(images, vae, "resize")
    assert sizes == [2, 2, 1] and progress[-1].updates == [2, 4, 5]
    tol = stack_tolerance(vae.descriptor.model, 1.0, pixels=32 * 36, dtype=torch.float32,
                          amplification=1)
    torch.testing.assert_close(chunked["samples"], whole["samples"], rtol=0, atol=tol)


def _fails_first(real, record):
    """``real`` that runs out of device memory on its first call; ``record(kwargs)`` per call."""
    def wrapper(*args, **kwargs):
        record.append(kwargs.get("tile", kwargs.get("memory_budget_mb")))
        if len(record) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate (forced)")
        return real(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize("stage", ["encode_old", "map_latent", "decode_clean"])
def test_out_of_memory_on_the_first_try_runs_again_in_strips(comfy_mm, handle, images, stage,
                                                            monkeypatch, oldphoto_logs):
    enc, mapping, dec = OldPhotoVAEEncodeOld(), M["OldPhotoLatentMap"](), \
        M["OldPhotoVAEDecodeClean"]()
    vae_a, vae_b = handle("vae", "VAE_A_quality.pth"), handle("vae", "VAE_B_quality.pth")
    mapper = handle("mapping_quality")
    (lat,) = enc.encode(images, vae_a, "resize")
    (clean,) = mapping.map(lat, mapper, 0)
    (ref,) = dec.decode(clean, vae_b, "reference", True)
    tiles = []
    monkeypatch.setattr(restoration_nodes, stage,
                        _fails_first(getattr(restoration_nodes, stage), tiles))
    (lat2,) = enc.encode(images, vae_a, "resize")
    (clean2,) = mapping.map(lat2, mapper, 0)
    (out,) = dec.decode(clean2, vae_b, "reference", True)
    assert tiles == [False, True]  # ComfyUI's OOM_EXCEPTION, then exact strips
    assert "in strips" in oldphoto_logs.text
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)  # strips: same up to summation order


def test_out_of_memory_in_the_all_in_one_runs_again_in_strips(use_models, comfy_mm, images,
                                                             monkeypatch):
    tiles = []
    real = Restorer.restore

    def restore(self, *args, **kwargs):
        tiles.append(self.tile)
        if len(tiles) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (forced)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Restorer, "restore", restore)
    out, _, info = OldPhotoRestore().restore(images, "off", False, "off", "auto", "oldphoto")
    assert tiles == ["auto", "on"] and out.shape == images.shape
    assert [i["mode"] for i in json.loads(info)] == ["quality", "quality"]


def test_out_of_memory_in_face_enhance_runs_one_face_at_a_time(comfy_mm, handle, images,
                                                               fake_detector, monkeypatch):
    (found,) = M["OldPhotoFaceDetect"]().detect(images, fake_detector(1))
    budgets = []
    monkeypatch.setattr(faces, "enhance_faces", _fails_first(faces.enhance_faces, budgets))
    (out,) = M["OldPhotoFaceEnhance"]().enhance(found, handle("face", face_size=256))
    assert budgets == [None, 1] and isinstance(out, FaceSet) and out.enhanced


def test_a_cpu_allocation_failure_is_not_retried(handle, images, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(kwargs.get("tile"))
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate")

    monkeypatch.setattr(restoration_nodes, "encode_old", failing)
    with pytest.raises(RuntimeError, match="DefaultCPUAllocator"):
        OldPhotoVAEEncodeOld().encode(images, handle("vae"), "resize")
    assert calls == [False]
