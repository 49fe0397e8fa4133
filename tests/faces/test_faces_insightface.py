"""The insightface (SCRFD) backend end to end with a tiny SCRFD-shaped ONNX model.

The tiny model (built by conftest) has det_10g.onnx's signature; a uniform 32 px cell aligned on
the stride-32 grid fires with a known score, and its box and five points are fixed distances from
the anchor centre, so every number the backend returns is known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numeric_bounds import gamma

from oldphoto_core.faces import blend_window, detect_faces, make_face_detector, restore_faces


@pytest.fixture(scope="module")
def detector(tiny_scrfd_root):
    return make_face_detector("insightface", insightface_root=tiny_scrfd_root)


def scene(scale: int = 1) -> np.ndarray:
    """480x640 black image (times ``scale``) with a white and a grey 32 px cell."""
    img = np.zeros((480 * scale, 640 * scale, 3), np.uint8)
    img[224 * scale:256 * scale, 320 * scale:352 * scale] = 255  # cell (7, 10)
    img[96 * scale:128 * scale, 128 * scale:160 * scale] = 200  # cell (3, 4)
    return img


@pytest.mark.parametrize("scale", [1, 2])
def test_known_detections(detector, scale, helpers, no_network):
    faces = detect_faces(helpers.to_nchw(scene(scale)), detector)[0]
    assert len(faces) == 2  # duplicates of the 2 anchors removed by NMS, nothing else fires
    for face, (row, col, level) in zip(faces, [(7, 10, 255), (3, 4, 200)], strict=True):
        box, kps, score = helpers.tiny_expected(row, col, level, det_scale=1 / scale)
        # anchor + distance * stride, then / det_scale: exact small numbers through at most a
        # few float32 roundings of coordinates <= 640 * scale
        coord_tol = gamma(4) * 640 * scale
        np.testing.assert_allclose(face.box, box, atol=coord_tol)
        np.testing.assert_allclose(face.landmarks, kps, atol=coord_tol)
        # the logit is exact (uniform cell: every pooling and mean exact in float32); ONNX
        # Runtime's vectorised sigmoid is a polynomial approximation accurate to ~1e-7 on each
        # of its CPU kernels: 1e-5 allows 100x that, a wrong gain or cell moves it by > 1e-2
        assert face.score == pytest.approx(score, abs=1e-5)
    assert faces[0].score > faces[1].score  # highest score first


def test_threshold_and_blank(tiny_scrfd_root, helpers, no_network):
    strict = make_face_detector("insightface", insightface_root=tiny_scrfd_root, threshold=0.9)
    faces = detect_faces(helpers.to_nchw(scene()), strict)[0]
    assert len(faces) == 1 and faces[0].score > 0.9
    assert detect_faces(torch.zeros(1, 3, 100, 120), strict) == [[]]


def test_end_to_end_restore(detector, tiny_enhancer, helpers, no_network):
    """insightface detection -> alignment -> enhancement -> blend, on a batch of two."""
    img = scene()
    img[40:60, 500:600] = 90  # something that is not a face
    x = torch.cat([helpers.to_nchw(img), torch.zeros(1, 3, 480, 640)])
    out, faces = restore_faces(x, detector, tiny_enhancer, face_size=64)
    assert [len(f) for f in faces] == [2, 0]
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[1], x[1])
    touched = np.zeros((480, 640), bool)
    for f in faces[0]:
        assert f.enhanced.shape == (3, 64, 64) and f.aligned.shape == (3, 64, 64)
        win = blend_window(f, 480, 640)
        touched[win.slices] |= win.weight > 0
    keep = torch.from_numpy(~touched)
    assert torch.equal(out[0][:, keep], x[0][:, keep])
    assert not torch.equal(out[0], x[0])
    assert out.min() >= 0 and out.max() <= 1
