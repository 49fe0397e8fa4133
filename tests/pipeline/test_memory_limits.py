"""The Restorer's memory check and its downscaled working size (``max_megapixels``)."""

from __future__ import annotations

import pytest
import torch

from oldphoto_core import InsufficientMemoryError, Restorer


def test_restorer_refuses_before_touching_a_model(synthetic_store, monkeypatch) -> None:
    """The check runs first: no network is called for a photo that cannot fit."""
    monkeypatch.setenv("OLDPHOTO_AVAILABLE_MEMORY", str(300 * 2**20))
    restorer = Restorer(synthetic_store)
    called = []
    monkeypatch.setattr("oldphoto_core.pipeline.encode_old",
                        lambda *a, **k: called.append(1))
    with pytest.raises(InsufficientMemoryError):
        restorer.restore(torch.rand(1, 3, 600, 800), scratch="off")
    assert not called


def test_max_megapixels_restores_at_the_working_size_and_returns_the_input_size(
        synthetic_store, monkeypatch) -> None:
    monkeypatch.delenv("OLDPHOTO_AVAILABLE_MEMORY", raising=False)
    restorer = Restorer(synthetic_store, max_megapixels=0.01)
    image = torch.rand(1, 4, 150, 200)
    assert restorer.working_size((150, 200)) == (86, 115)
    result = restorer.restore(image, scratch="off")
    assert result.images.shape == image.shape
    assert tuple(result.working["input"].shape[-2:]) == (88, 116)  # the quality rule's size
    assert torch.equal(result.images[:, 3:], image[:, 3:])        # alpha at full size, as is
    with pytest.raises(Exception, match="positive"):
        Restorer(synthetic_store, max_megapixels=0)
