"""The command line: one entry point, identical common flags, clear errors before training."""

from __future__ import annotations

import pytest

from training.cli import build_parser, main, parse_config
from training.config import PUBLISHED_WIDTH, STAGES

COMMON = ("--data", "--out", "--steps", "--batch", "--crop", "--width", "--lr", "--seed",
          "--device", "--resume", "--init", "--log-every", "--sample-every", "--save-every",
          "--stop-after", "--workers", "--small", "--max-side", "--damage-scale")
STAGE_FLAGS = {
    "vae_clean": ("--variant", "--kl-weight", "--l1-weight", "--fm-weight", "--vgg19"),
    "vae_old": ("--old", "--kl-weight", "--l1-weight", "--latent-gan-weight", "--vgg19"),
    "mapping": ("--variant", "--vae-old", "--vae-clean", "--latent-weight", "--fm-weight",
                "--vgg19"),
    "detector": ("--pairs", "--pairs-fraction", "--focal-gamma", "--focal-weight"),
    "face": ("--face-size", "--aligned", "--face-detector", "--insightface-root", "--vgg19"),
}


@pytest.mark.parametrize("stage", STAGES)
def test_help_of_each_stage_explains_every_flag(stage, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([stage, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in COMMON + STAGE_FLAGS[stage]:
        assert flag in text, flag


@pytest.mark.parametrize("stage", ["vae_clean", "vae_old", "detector", "face"])
def test_defaults_are_the_papers(stage, tmp_path):
    cfg = parse_config([stage, "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert cfg.width == PUBLISHED_WIDTH[stage] and cfg.lr == 2e-4 and cfg.batch == 8
    assert cfg.crop == 256


def test_mapping_defaults_and_required_vaes(tmp_path, capsys):
    base = ["mapping", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    cfg = parse_config([*base, "--vae-old", "a", "--vae-clean", "b"])
    assert (cfg.width, cfg.variant, cfg.latent_weight, cfg.fm_weight) == (512, "quality", 60, 10)
    with pytest.raises(SystemExit):
        parse_config(base)
    assert "--vae-old and --vae-clean missing" in capsys.readouterr().err


def test_face_trains_at_the_face_size_unless_told(tmp_path):
    args = ["face", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--face-size", "512"]
    assert parse_config(args).crop == 512
    assert parse_config([*args, "--crop", "64"]).crop == 64


@pytest.mark.parametrize("args, message", [
    (["detector", "--crop", "40"], "multiple of 16"),
    (["mapping", "--variant", "hr", "--crop", "48", "--vae-old", "a", "--vae-clean", "b"],
     "multiple of 32"),
    (["vae_clean", "--steps", "0"], "--steps must be"),
    (["detector", "--pairs-fraction", "2"], "--pairs-fraction"),
])
def test_bad_values_are_refused_before_any_work(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_config([*args, "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert message in capsys.readouterr().err


def test_a_folder_without_photos_fails_with_one_clear_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["vae_clean", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                 "--crop", "32", "--width", "4", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "error: " in err and "no usable photos (0 image file(s) found" in err
    assert not (tmp_path / "o" / "resume.state").exists()
