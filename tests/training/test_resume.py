"""Exact resume: 2 steps + ``--resume`` to 4 steps equals 4 uninterrupted steps, bit for bit.

``vae_old`` with real old photos exercises everything a resume must restore: two
discriminators and three optimisers, the KL noise drawn from the global RNG, the LR schedule
(which decays over the second half, i.e. during steps 3-4 here), and damaged data drawn by
worker processes. The interrupted run also writes sample grids, which must not disturb
training.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from training.errors import TrainingError


def _state(folder):
    return torch.load(folder / "resume.state", weights_only=True)


def _flatten(obj, prefix=""):
    """Every tensor and number of a nested state, by path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}/{i}"))
        return out
    return {prefix: obj}


def test_two_plus_two_steps_equal_four(photos, old_photos, tmp_path, tiny, train_run):
    common = ["vae_old", "--data", str(photos), "--old", str(old_photos), *tiny,
              "--steps", "4", "--save-every", "0"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_run([*common, "--out", str(whole), "--sample-every", "0"])
    first = train_run([*common, "--out", str(parts), "--stop-after", "2", "--sample-every", "1"])
    assert first.step == 2 and _state(parts)["step"] == 2
    second = train_run([*common, "--out", str(parts), "--resume", "--sample-every", "1"])
    assert second.step == 4

    a = load_file(str(whole / "VAE_A.safetensors"))
    b = load_file(str(parts / "VAE_A.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = _flatten(_state(whole)), _flatten(_state(parts))
    for path in ("/networks", "/optimizers", "/schedulers", "/rng", "/step", "/sample"):
        keys = [k for k in sa if k.startswith(path)]
        assert keys and all(k in sb for k in keys)
        for k in keys:
            if isinstance(sa[k], torch.Tensor):
                assert torch.equal(sa[k], sb[k]), k
            else:
                assert sa[k] == sb[k], k
    steps = [r for r in (parts / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 4                       # logged once per step across both parts


def test_resume_refuses_a_state_of_another_configuration(photos, tmp_path, tiny, train_run):
    out = tmp_path / "run"
    args = ["vae_clean", "--data", str(photos), "--out", str(out), *tiny, "--workers", "0",
            "--sample-every", "0"]
    train_run([*args, "--stop-after", "1"])
    with pytest.raises(TrainingError, match="width=8.*width=4"):
        train_run([*args, "--width", "4", "--resume"])
    with pytest.raises(TrainingError, match="no resume state"):
        train_run([*args, "--resume", str(tmp_path / "missing.state")])
    train_run([*args, "--resume"])
    with pytest.raises(TrainingError, match="already at step 2"):
        train_run([*args, "--resume"])
