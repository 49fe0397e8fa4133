"""Resume-state plumbing: every RNG round-trips, writes are atomic, reads are safe."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from training.checkpoint import capture_rng, load_state, restore_rng, save_state
from training.errors import TrainingError
from training.schedule import lr_factor


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(1).item()


def test_every_rng_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()                      # leave a cached Gaussian in NumPy's state
    save_state({"rng": [capture_rng()]}, tmp_path / "s.state")
    expected = _draws()
    _draws()
    restore_rng(load_state(tmp_path / "s.state")["rng"][0])
    assert _draws() == expected
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_files_are_refused(tmp_path):
    torch.save({"format": 99}, tmp_path / "other.state")
    with pytest.raises(TrainingError, match="not a resume state of this version"):
        load_state(tmp_path / "other.state")
    (tmp_path / "junk.state").write_bytes(b"junk")
    with pytest.raises(TrainingError, match="cannot read"):
        load_state(tmp_path / "junk.state")


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    factors = [lr_factor(s, 10) for s in range(11)]
    assert factors == pytest.approx([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0])
    assert [lr_factor(s, 3) for s in range(4)] == pytest.approx([1, 1, 0.5, 0])
