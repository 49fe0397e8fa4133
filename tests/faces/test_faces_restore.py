"""``restore_faces``: the one call the pipeline makes (detect once, align, enhance, blend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, blend_window, restore_faces


class FixedDetector:
    """A detector that returns the same faces for every image and counts its calls."""

    name = "fixed"

    def __init__(self, landmark_sets):
        self.landmark_sets = landmark_sets
        self.calls = 0

    def detect(self, image):
        assert image.dtype == np.uint8 and image.shape[2] == 3
        self.calls += 1
        return [Face(box=(lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()),
                     score=1.0, landmarks=lm) for lm in self.landmark_sets]


def lms(cx, cy, s):
    base = np.array([[-0.3, -0.25], [0.3, -0.25], [0.0, 0.05], [-0.22, 0.35], [0.22, 0.35]])
    return np.round(base * s + [cx, cy])


def touched_mask(faces, h, w):
    m = np.zeros((h, w), bool)
    for f in faces:
        win = blend_window(f, h, w)
        m[win.slices] |= win.weight > 0
    return torch.from_numpy(m)


def test_batch_restore(tiny_enhancer):
    x = torch.rand(2, 3, 120, 160)
    det = FixedDetector([lms(50, 60, 40), lms(120, 50, 35)])
    out, faces = restore_faces(x, det, tiny_enhancer, face_size=64)
    assert det.calls == 2 and [len(f) for f in faces] == [2, 2]
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(2):
        keep = ~touched_mask(faces[i], 120, 160)
        assert torch.equal(out[i][:, keep], x[i][:, keep])
        assert not torch.equal(out[i], x[i])
        assert all(f.image_index == i and f.enhanced is not None for f in faces[i])


def test_given_faces_skip_detection(tiny_enhancer):
    x = torch.rand(1, 3, 100, 100)
    det = FixedDetector([lms(50, 50, 40)])
    out1, faces = restore_faces(x, det, tiny_enhancer, face_size=64)
    out2, _ = restore_faces(x, None, tiny_enhancer, face_size=64, faces=faces)
    assert det.calls == 1 and torch.equal(out1, out2)
    with pytest.raises(InputError, match="one list per batch item"):
        restore_faces(x, None, tiny_enhancer, faces=[[], []])


def test_no_faces_or_no_detector_returns_the_input(tiny_enhancer):
    x = torch.rand(2, 1, 50, 60, dtype=torch.float64)
    for det in (None, FixedDetector([])):
        out, faces = restore_faces(x, det, tiny_enhancer)
        assert torch.equal(out, x) and out is not x and faces == [[], []]


def test_channels_and_dtype_are_kept(tiny_enhancer):
    rgb = torch.rand(1, 3, 96, 96, dtype=torch.float64)
    det = FixedDetector([lms(48, 48, 40)])
    gray, _ = restore_faces(rgb[:, :1], det, tiny_enhancer, face_size=64)
    assert gray.shape == (1, 1, 96, 96) and gray.dtype == torch.float64
    rgba_in = torch.cat([rgb, torch.rand_like(rgb[:, :1])], 1)
    rgba, _ = restore_faces(rgba_in, det, tiny_enhancer, face_size=64)
    rgb_out, _ = restore_faces(rgb, det, tiny_enhancer, face_size=64)
    assert torch.equal(rgba[:, 3], rgba_in[:, 3]) and torch.equal(rgba[:, :3], rgb_out)


def test_face_size_512(tiny_enhancer):
    x = torch.rand(1, 3, 200, 200)
    out, faces = restore_faces(x, FixedDetector([lms(100, 100, 120)]), tiny_enhancer,
                               face_size=512)
    f = faces[0][0]
    assert f.face_size == 512 and f.aligned.shape == (3, 512, 512)
    assert f.enhanced.shape == (3, 512, 512) and not torch.equal(out, x)


def test_input_is_not_modified(tiny_enhancer):
    x = torch.rand(1, 3, 80, 80)
    before = x.clone()
    restore_faces(x, FixedDetector([lms(40, 40, 30)]), tiny_enhancer, face_size=64)
    assert torch.equal(x, before)


@pytest.mark.parametrize("bad", [torch.rand(3, 8, 8), torch.rand(1, 2, 8, 8),
                                 torch.rand(0, 3, 8, 8), torch.rand(1, 3, 8, 8) * 3])
def test_input_errors(bad, tiny_enhancer):
    with pytest.raises(InputError):
        restore_faces(bad, FixedDetector([]), tiny_enhancer)
