"""Every stage trains 2 steps on a tiny folder and writes a generator the engine accepts."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from oldphoto_core.loading import load_model
from oldphoto_core.models import ModelStore
from oldphoto_core.pipeline import Restorer

#: run name -> (generator file, registry id, role, loss keys that must be logged)
EXPECTED = {
    "vae_clean": ("VAE_B_quality.safetensors", "vae", "vae_b_quality",
                  {"kl", "l1", "g_gan", "g_fm", "d_real", "d_fake"}),
    "vae_old": ("VAE_A.safetensors", "vae", "vae_a",
                {"kl", "l1", "g_gan", "g_latent_gan", "latent_d_synthetic",
                 "latent_d_real_old"}),
    "mapping_quality": ("mapping_quality.safetensors", "mapping_quality", "mapping_quality",
                        {"latent_l1", "g_gan", "g_fm", "d_real", "d_fake"}),
    "mapping_scratch": ("mapping_scratch.safetensors", "mapping_scratch", "mapping_scratch",
                        {"latent_l1", "g_gan", "g_fm"}),
    "mapping_hr": ("mapping_Patch_Attention.safetensors", "mapping_patch_attention",
                   "mapping_hr", {"latent_l1", "g_gan", "g_fm"}),
    "detector": ("scratch_detector.safetensors", "scratch_unet", "scratch_detector",
                 {"ce", "focal", "total", "f1"}),
    "face": ("face_256.safetensors", "face_spade", "face_256", {"g_gan", "g_fm", "d_real"}),
}


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stage_runs_two_steps_with_finite_losses(stage_runs, name):
    filename, arch_id, role, keys = EXPECTED[name]
    folder = stage_runs[name]
    records = _metrics(folder)
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert keys <= set(r), f"{name}: logged {sorted(r)}"
        assert all(math.isfinite(v) for v in r.values())
    assert (folder / "samples" / "step_0000002.png").is_file()
    assert (folder / "resume.state").is_file() and (folder / "config.json").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_written_generator_is_recognised_and_loads_strictly(stage_runs, name):
    filename, arch_id, role, _ = EXPECTED[name]
    desc = load_model(stage_runs[name] / filename, expect=arch_id)  # strict load inside
    assert desc.arch.id == arch_id
    meta = desc.metadata
    assert meta["oldphoto.arch"] == arch_id and meta["oldphoto.role"] == role
    assert meta["oldphoto.training.step"] == "2"
    assert meta["oldphoto.training.width"] == "8"
    assert int(meta["oldphoto.training.data_size"]) > 0
    assert meta["oldphoto.training.stage"] == ("mapping" if name.startswith("mapping")
                                                else name)


def test_the_resume_state_loads_with_weights_only(stage_runs):
    state = torch.load(stage_runs["vae_old"] / "resume.state", weights_only=True)
    assert state["step"] == 2 and set(state["networks"]) == {
        "generator", "discriminator", "latent_discriminator"}


def test_model_store_and_restorer_use_the_trained_files(stage_runs, tmp_path):
    """A folder of the runs' outputs serves the restoration unchanged (roles from metadata)."""
    models = tmp_path / "models"
    models.mkdir()
    for name, (filename, *_rest) in EXPECTED.items():
        if name != "face":
            shutil.copy(stage_runs[name] / filename, models / filename)
    # one clean VAE stands for both published clean VAEs: a copy under the other role's name
    shutil.copy(models / "VAE_B_quality.safetensors", models / "VAE_B_scratch.safetensors")
    store = ModelStore(models)
    assert {"vae_a", "vae_b_quality", "vae_b_scratch", "mapping_quality", "mapping_scratch",
            "mapping_hr", "scratch_detector"} <= set(store.files), store.notes
    photo = torch.rand(1, 3, 48, 64)
    for scratch, hr in (("off", False), ("on", False), ("on", True)):
        out = Restorer(store).restore(photo, scratch=scratch, hr=hr)
        assert out.images.shape == photo.shape and torch.isfinite(out.images).all()


def test_vae_old_without_real_photos_says_the_latent_gan_has_no_real_side(
        photos, tmp_path, tiny, train_run):
    out = tmp_path / "run"
    train_run(["vae_old", "--data", str(photos), "--out", str(out), *tiny, "--steps", "1",
               "--workers", "0", "--sample-every", "0"])
    log = (out / "train.log").read_text()
    assert "latent GAN (eq. 3-4) has no real side" in log
    assert "g_latent_gan" not in _metrics(out)[-1]


def test_vgg_term_is_on_with_torchvision_weights(photos, tmp_path, tiny, train_run, vgg19_sd):
    torch.save(vgg19_sd(), tmp_path / "vgg19.pth")
    out = tmp_path / "run"
    train_run(["vae_clean", "--data", str(photos), "--out", str(out), *tiny, "--steps", "1",
               "--workers", "0", "--sample-every", "0", "--vgg19", str(tmp_path / "vgg19.pth")])
    record = _metrics(out)[-1]
    assert record["g_vgg"] > 0 and math.isfinite(record["g_vgg"])
    assert "VGG19 perceptual term on" in (out / "train.log").read_text()


def test_init_fine_tunes_from_a_checkpoint_and_refuses_other_networks(stage_runs, tmp_path,
                                                                      photos, tiny):
    from training.cli import parse_config
    from training.distributed import Context
    from training.errors import TrainingError
    from training.records import RunLog
    from training.stages import build_stage
    base = ["detector", "--data", str(photos), "--out", str(tmp_path / "o"), *tiny]
    source = stage_runs["detector"] / "scratch_detector.safetensors"
    stage = build_stage(parse_config([*base, "--init", str(source)]), Context(),
                        RunLog(None, enabled=False))
    expected = load_model(source).model.state_dict()
    got = stage.export().module.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    face = stage_runs["face"] / "face_256.safetensors"
    with pytest.raises(TrainingError, match="--init"):
        build_stage(parse_config([*base, "--init", str(face)]), Context(),
                    RunLog(None, enabled=False))
    with pytest.raises(TrainingError, match="must match --width 4"):
        build_stage(parse_config([*base, "--width", "4", "--init", str(source)]), Context(),
                    RunLog(None, enabled=False))


def test_oldphoto_info_recognises_every_written_generator(stage_runs, capsys):
    from oldphoto_core.cli.commands import main as oldphoto
    files = [str(stage_runs[name] / filename) for name, (filename, *_r) in EXPECTED.items()]
    assert oldphoto(["info", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, (_name, (_f, arch_id, _role, _keys)) in zip(lines, EXPECTED.items(), strict=True):
        assert f": {arch_id} - " in line and f"(metadata: {arch_id})" in line
