"""Safe loading: every way a checkpoint can be wrong gets a clear error naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from oldphoto_core import (
    CheckpointError,
    UnsupportedModelError,
    load_model,
    model_from_state_dict,
    read_state_dict,
)
from oldphoto_core.arch import OldPhotoVAE, ScratchUNet


@pytest.fixture(scope="module")
def vae_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return OldPhotoVAE().state_dict()


@pytest.fixture(scope="module")
def unet_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ScratchUNet(base=8).state_dict()


class _Exploit:
    """Unpickling this would run ``open(marker, 'w')`` - it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, vae_sd):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": vae_sd, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_legacy_pickle_with_code_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pt"
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_truncated_torch_file(tmp_path: Path, vae_sd):
    path = tmp_path / "latest_net_G.pth"
    torch.save(vae_sd, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_truncated_safetensors(tmp_path: Path, vae_sd):
    path = tmp_path / "vae.safetensors"
    save_file(dict(vae_sd), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match=r"vae\.safetensors.*safetensors"):
        load_model(path)


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_text_file(tmp_path: Path):
    path = tmp_path / "readme.pth"
    path.write_text("these are not the weights you are looking for\n")
    with pytest.raises(CheckpointError, match="not a checkpoint") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nope.pth")


def test_state_dict_of_another_network(tmp_path: Path, unet_sd):
    path = tmp_path / "latest_net_G.pth"
    torch.save({"model_state": unet_sd}, path)
    with pytest.raises(CheckpointError, match="expected a vae checkpoint.*scratch detection") as e:
        load_model(path, expect="vae")
    assert str(path) in str(e.value)


def test_one_tensor_of_wrong_shape(tmp_path: Path, vae_sd):
    bad = dict(vae_sd)
    bad["decoder.4.weight"] = torch.zeros(64, 64, 3, 3)
    path = tmp_path / "vae.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "decoder.4.weight" in msg
    assert "[64, 64, 3, 3]" in msg and "[64, 64, 4, 4]" in msg


def test_missing_key_is_named(tmp_path: Path, vae_sd):
    bad = {k: v for k, v in vae_sd.items() if k != "decoder.7.bias"}
    with pytest.raises(CheckpointError, match=r"missing decoder\.7\.bias"):
        model_from_state_dict(bad, source="x.pth")


def test_unknown_network_names_nearest_candidates(tmp_path: Path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(UnsupportedModelError, match="not a network oldphoto knows") as info:
        load_model(path)
    assert str(path) in str(info.value) and "conv1.weight" in str(info.value)
    assert "missing" in str(info.value)


def test_non_tensor_entries_are_rejected(tmp_path: Path):
    path = tmp_path / "opt.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="'epoch' is a int"):
        load_model(path)


def test_wrappers_and_module_prefix_are_unwrapped(tmp_path: Path, unet_sd):
    path = tmp_path / "FT_Epoch_latest.pt"
    torch.save({"model_state": {f"module.{k}": v for k, v in unet_sd.items()}, "epoch": 5}, path)
    desc = load_model(path, expect="scratch_detector")
    assert desc.arch.id == "scratch_unet"
    for k, v in desc.model.state_dict().items():
        assert torch.equal(v, unet_sd[k])


def test_name_does_not_matter(tmp_path: Path, vae_sd):
    path = tmp_path / "mapping_quality_latest_net_mapping_net.weird"
    save_file(dict(vae_sd), str(path))
    assert load_model(path).arch.id == "vae"


def test_loaded_model_is_in_eval_mode_without_grad(tmp_path: Path, vae_sd):
    desc = model_from_state_dict(vae_sd)
    assert not desc.model.training
    assert not any(p.requires_grad for p in desc.model.parameters())
    raw, meta = read_state_dict(_save(tmp_path, vae_sd))
    assert meta == {} and set(raw) == set(vae_sd)


def _save(tmp_path: Path, sd) -> Path:
    p = tmp_path / "w.pth"
    torch.save(sd, p)
    return p


def test_loading_under_inference_mode_gives_normal_tensors(unet_sd):
    """ComfyUI runs nodes under inference_mode; cached models must stay usable outside it."""
    with torch.inference_mode():
        desc = model_from_state_dict({k: v.clone() for k, v in unet_sd.items()})
    assert not any(p.is_inference() for p in desc.model.parameters())
    with torch.no_grad():
        assert desc.model(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def _torch_save_named(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_reader_is_chosen_by_content_not_by_name(tmp_path: Path, unet_sd):
    """torch.load itself picks safetensors for a *path* ending in .safetensors; ours must not."""
    zipped = _torch_save_named(tmp_path, "unet.safetensors", {"model_state": unet_sd})
    assert load_model(zipped).arch.id == "scratch_unet"
    legacy = tmp_path / "legacy.safetensors"
    torch.save(unet_sd, legacy, _use_new_zipfile_serialization=False)
    assert load_model(legacy).arch.id == "scratch_unet"
    real = tmp_path / "unet.pth"   # and a safetensors file under a .pth name
    save_file(unet_sd, str(real))
    assert load_model(real).arch.id == "scratch_unet"


def _bad_files(tmp_path: Path, unet_sd) -> dict[str, Path]:
    out = {}
    out["plain pickle"] = tmp_path / "pickled.safetensors"
    out["plain pickle"].write_bytes(pickle.dumps({"w": [1, 2]}, protocol=2))
    out["text"] = tmp_path / "notes.safetensors"
    out["text"].write_text("weights: see the release page")
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(32, 32)}, str(good))
    out["bad header length"] = tmp_path / "hdr.safetensors"
    out["bad header length"].write_bytes((10**12).to_bytes(8, "little") + b"{" + b"x" * 20)
    out["truncated safetensors"] = tmp_path / "cut.safetensors"
    out["truncated safetensors"].write_bytes(good.read_bytes()[:150])
    zipped = _torch_save_named(tmp_path, "unet.pt", unet_sd)
    out["truncated zip"] = tmp_path / "cut.pt"
    out["truncated zip"].write_bytes(zipped.read_bytes()[:2000])
    out["list"] = _torch_save_named(tmp_path, "list.pth", [torch.zeros(2)])
    out["non-tensor entry"] = _torch_save_named(tmp_path, "mixed.pth", {"w": "text"})
    out["folder"] = tmp_path / "folder.pth"
    out["folder"].mkdir()
    out["missing"] = tmp_path / "missing.pth"
    bad_shape = dict(unet_sd)
    first = next(k for k in bad_shape if k.endswith("weight"))
    bad_shape[first] = torch.zeros(3)   # recognised keys, a shape that cannot build the net
    out["wrong shapes"] = _torch_save_named(tmp_path, "shapes.pth", bad_shape)
    return out


def test_every_broken_file_raises_checkpoint_error_naming_it(tmp_path: Path, unet_sd):
    for what, path in _bad_files(tmp_path, unet_sd).items():
        for call in (read_state_dict, load_model):
            if call is read_state_dict and what in ("wrong shapes", "non-tensor entry"):
                continue  # readable files: the problem shows when building the network
            with pytest.raises(CheckpointError) as info:
                call(path)
            assert str(path) in str(info.value), (what, call.__name__, info.value)
