"""Enhancement: conventions of test_face.py, one batch for all faces, chunking, device/dtype."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, enhance_crops, enhance_faces, faces_per_chunk
from oldphoto_core.runtime.numerics import network_math


class Recorder(nn.Module):
    """Wraps a generator and records the batch sizes it sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)


def aligned_face(rng, size, index=0):
    crop = torch.from_numpy(rng.integers(0, 256, (3, size, size))).float() / 255
    return Face(box=(0, 0, 1, 1), score=1, landmarks=np.zeros((5, 2)), image_index=index,
                matrix=np.eye(3), face_size=size, aligned=crop)


def test_conventions_of_the_reference(tiny_enhancer):
    crops = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64))) / 255
    crops = crops.float()
    out = enhance_crops(crops, tiny_enhancer)
    with network_math():  # what enhance_crops runs the model in
        ref = ((tiny_enhancer((crops - 0.5) / 0.5) + 1) / 2).clamp(0, 1)
    assert torch.equal(out, ref)  # the same operations on the same batch: the same bits
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_all_faces_of_a_batch_run_together(tiny_enhancer):
    rng = np.random.default_rng(1)
    faces = [[aligned_face(rng, 64, 0), aligned_face(rng, 64, 0)], [],
             [aligned_face(rng, 64, 2)]]
    rec = Recorder(tiny_enhancer)
    out = enhance_faces(faces, rec)
    assert rec.batches == [3]
    assert [len(f) for f in out] == [2, 0, 1]
    assert all(f.enhanced.shape == (3, 64, 64) for item in out for f in item)
    assert faces[0][0].enhanced is None  # inputs untouched


def test_chunking_by_memory_budget(tiny_enhancer):
    rng = np.random.default_rng(2)
    crops = torch.stack([aligned_face(rng, 64).aligned for _ in range(5)])
    rec = Recorder(tiny_enhancer)
    one_go = enhance_crops(crops, rec)
    per_face = 750 * 64 * 64 * 4 / 2**20
    calls: list[tuple[int, int]] = []
    chunked = enhance_crops(crops, rec, memory_budget_mb=2.5 * per_face,
                            progress=lambda done, total: calls.append((done, total)))
    assert rec.batches == [5, 2, 2, 1]
    assert calls == [(2, 5), (4, 5), (5, 5)]
    # each chunk is what the model gives for that batch, in order: the same bits (a batch of
    # 2 and one of 5 may take other convolution kernels, so one_go is no bit-exact reference)
    per_chunk = torch.cat([enhance_crops(crops[s:s + 2], tiny_enhancer) for s in (0, 2, 4)])
    assert torch.equal(chunked, per_chunk)
    assert one_go.shape == chunked.shape


def test_faces_per_chunk():
    assert faces_per_chunk(256, memory_budget_mb=2048) == 10
    assert faces_per_chunk(512, memory_budget_mb=2048) == 2
    assert faces_per_chunk(512, memory_budget_mb=2048, dtype=torch.float16) == 5
    assert faces_per_chunk(512, memory_budget_mb=1) == 1
    assert faces_per_chunk(256) >= 1


def test_dtype_argument_moves_and_restores(tiny_enhancer):
    crops = torch.rand(1, 3, 64, 64)
    ref = enhance_crops(crops, tiny_enhancer)
    out64 = enhance_crops(crops, tiny_enhancer, dtype=torch.float64, device="cpu")
    assert next(tiny_enhancer.parameters()).dtype == torch.float32  # moved back
    assert out64.dtype == torch.float32 and ref.shape == out64.shape
    # what enhance_crops does with dtype=float64, spelled out on a float64 twin: same bits
    twin = copy.deepcopy(tiny_enhancer).double()
    with network_math():
        y = twin(((crops - 0.5) / 0.5).double()).to(torch.float32)
    assert torch.equal(out64, ((y + 1) / 2).clamp(0, 1))


def test_descriptor_and_errors(tiny_enhancer):
    rng = np.random.default_rng(3)

    class Descriptor:  # what a ModelDescriptor offers to enhance_crops
        kind = "face_enhancer"
        model = tiny_enhancer

    class Other(Descriptor):
        kind = "vae"

    crops = torch.rand(2, 3, 64, 64)
    assert torch.equal(enhance_crops(crops, Descriptor()), enhance_crops(crops, tiny_enhancer))
    assert enhance_crops(torch.zeros(0, 3, 64, 64), Descriptor()).shape == (0, 3, 64, 64)

    with pytest.raises(InputError, match="face_enhancer"):
        enhance_crops(torch.rand(1, 3, 64, 64), Other())
    with pytest.raises(InputError, match="face model"):
        enhance_crops(torch.rand(1, 3, 64, 64), object())
    with pytest.raises(InputError, match="multiple of 32"):
        enhance_crops(torch.rand(1, 3, 60, 60), tiny_enhancer)
    with pytest.raises(InputError, match=r"\[F, 3, S, S\]"):
        enhance_crops(torch.rand(3, 64, 64), tiny_enhancer)
    unaligned = Face(box=(0, 0, 1, 1), score=1, landmarks=np.zeros((5, 2)))
    with pytest.raises(InputError, match="aligned first"):
        enhance_faces([[unaligned]], tiny_enhancer)
    with pytest.raises(InputError, match="one size"):
        enhance_faces([[aligned_face(rng, 64), aligned_face(rng, 96)]], tiny_enhancer)
    assert enhance_faces([[], []], tiny_enhancer) == [[], []]
