"""TF32 stays off inside our network calls unless asked for, and the caller's flags survive."""

from __future__ import annotations

import pytest
import torch

from oldphoto_core.runtime.numerics import network_math, use_precision


@pytest.fixture
def flags():
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _state():
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_exact_by_default_and_flags_restored(flags):
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    with network_math():
        assert _state() == (False, False)
        assert torch.is_inference_mode_enabled()
    assert _state() == (True, True)


def test_use_precision_opts_in_for_the_block_only(flags):
    torch.backends.cudnn.allow_tf32 = False
    with use_precision("tf32"), network_math():
        assert _state() == (True, True)
    with network_math():
        assert _state() == (False, False)
    assert _state() == (False, False)


def test_unknown_precision():
    with pytest.raises(ValueError, match="precision"), use_precision("fp8"):
        pass
