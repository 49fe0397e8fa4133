"""``oldphoto models list`` and ``oldphoto models verify`` on folders written here: the
published layout (tiny networks saved as the reference saves them), a model set with a
``manifest.json``, the bundled default set (``tiny_bundled_set``), corrupt files.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch

from oldphoto_core.arch import OldPhotoVAE, QualityMapping
from oldphoto_core.cli.commands import main
from oldphoto_core.models import ROLES


@pytest.fixture(scope="module")
def weights() -> dict[str, bytes]:
    """``role -> .pth bytes`` of tiny networks for the quality mode."""
    torch.manual_seed(0)
    nets = {"vae_a": OldPhotoVAE(channels=8), "vae_b_quality": OldPhotoVAE(channels=8),
            "mapping_quality": QualityMapping(latent_channels=8, width=16, n_blocks=1)}
    return {role: _pth(net.state_dict()) for role, net in nets.items()}


def _pth(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write_folder(folder: Path, weights: dict[str, bytes], roles: list[str]) -> None:
    for role in roles:
        path = folder / ROLES[role].published_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(weights[role])


def test_list_and_verify_a_folder(weights, tmp_path, capsys):
    _write_folder(tmp_path, weights, ["vae_a", "vae_b_quality", "mapping_quality"])
    (tmp_path / "stray.pth").write_bytes(_pth({"foo.weight": torch.zeros(2)}))
    assert main(["models", "list", "--models", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"--models: {tmp_path}" in out
    assert re.search(r"mapping_quality +Global/checkpoints/restoration/mapping_quality/", out)
    assert "note: skipped" in out and "stray.pth: not a network oldphoto knows" in out
    assert f"restore uses: checkpoints in {tmp_path}" in out
    assert re.search(r"quality +yes", out)
    assert re.search(r"scratch +no \(missing scratch_detector, mapping_scratch, "
                     r"vae_b_scratch\)", out)
    assert re.search(r"faces 256 px +no \(missing face_256\)", out)

    assert main(["models", "verify", "--models", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\nOK ") == 3 and "UNUSED skipped" in out and "3 OK, 0 failed" in out


def test_list_shows_every_place_and_the_bundled_set(tiny_bundled_set, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "$OLDPHOTO_MODELS" not in out  # unset
    assert "./models: models\n  (no such folder)" in out
    assert "oldphoto default (bundled):" in out and "VAE_B.safetensors" in out
    assert "restore uses: oldphoto default (bundled)" in out
    assert re.search(r"auto +yes", out) and re.search(r"hr +no \(missing mapping_hr\)", out)


def test_list_unknown_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["models", "list", "--models", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_verify_fails_on_corrupt_or_misfitting_files(weights, tmp_path, capsys):
    _write_folder(tmp_path, weights, ["vae_a", "vae_b_quality", "mapping_quality"])
    (tmp_path / ROLES["mapping_quality"].published_path).write_bytes(weights["mapping_quality"][
        :2000])  # truncated
    sd = torch.load(io.BytesIO(weights["vae_a"]), weights_only=True)
    del sd["decoder.11.bias"]  # still recognised as a VAE, but does not load strictly
    (tmp_path / ROLES["vae_a"].published_path).write_bytes(_pth(sd))
    assert main(["models", "verify", "--models", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"FAILED vae_a: .*VAE_A_quality/latest_net_G.pth: .*missing "
                     r"decoder.11.bias", out)
    assert re.search(r"FAILED .*mapping_quality/latest_net_mapping_net.pth: .*truncated or "
                     r"corrupt", out)
    assert "1 OK, 2 failed" in out


def test_verify_judges_files_the_set_does_not_use(weights, tmp_path, capsys):
    _write_folder(tmp_path, weights, ["vae_a", "vae_b_quality", "mapping_quality"])
    pth = tmp_path / ROLES["mapping_quality"].published_path
    assert main(["convert", str(pth), str(pth.with_suffix(".safetensors"))]) == 0
    wrong = tmp_path / ROLES["mapping_scratch"].published_path
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(weights["vae_a"])  # a VAE where the scratch mapping belongs
    assert main(["models", "verify", "--models", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"UNUSED ignored .*latest_net_mapping_net.safetensors: mapping_quality "
                     r"already found", out)  # a good duplicate: noted, not failed
    assert re.search(r"FAILED .*mapping_scratch/latest_net_mapping_net.pth: expected a "
                     r"mapping_scratch checkpoint, but this file holds a VAE", out)
    assert "3 OK, 1 failed" in out


def test_verify_empty_folder(tmp_path, capsys):
    assert main(["models", "verify", "--models", str(tmp_path)]) == 1
    assert "no checkpoint found" in capsys.readouterr().out


def test_list_and_verify_a_model_set_with_a_manifest(tiny_bundled_set, tmp_path, capsys):
    folder = tiny_bundled_set["vae_a"].parent  # a recipe's output layout: manifest + files
    assert main(["models", "list", "--models", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "note: roles as listed in its manifest.json" in out
    assert re.search(r"vae_b_scratch +VAE_B.safetensors", out)
    assert re.search(r"scratch +yes", out) and re.search(r"hr +no", out)
    assert re.search(r"auto +yes\n", out)
    # a set whose manifest keeps --scratch auto on the quality path says so
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "auto_scratch": False}))
    assert main(["models", "list", "--models", str(folder)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"auto +yes, the quality path \(the set's card measured", out)
    assert re.search(r"scratch +yes\n", out)
    manifest.write_text(json.dumps(data))
    assert main(["models", "verify", "--models", str(folder)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"OK +vae_b_quality, vae_b_scratch: .*VAE_B.safetensors", out)
    assert "5 OK, 0 failed" in out
