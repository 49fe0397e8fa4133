"""Detection: dlib on real photos, the detector factory, missing backends and input checks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from oldphoto_core.errors import InputError, OldPhotoError
from oldphoto_core.faces import (
    Face,
    FaceDetector,
    detect_faces,
    find_insightface_model,
    make_face_detector,
)
from oldphoto_core.faces.dlib_backend import (
    DlibFaceDetector,
    five_points_from_68,
    shape_predictor_path,
)
from oldphoto_core.faces.insightface_backend import InsightFaceDetector


def assert_plausible(face: Face, height: int, width: int) -> None:
    """Eyes above the nose above the mouth, left/right in order, points inside the box."""
    le, re_, nose, ml, mr = face.landmarks
    left, top, right, bottom = face.box
    assert left < right and top < bottom
    assert -2 <= left and -2 <= top and right <= width + 2 and bottom <= height + 2
    assert max(le[1], re_[1]) < nose[1] < min(ml[1], mr[1])
    assert le[0] < re_[0] and ml[0] < mr[0]
    assert (face.landmarks[:, 0] >= left - 2).all() and (face.landmarks[:, 0] <= right + 2).all()
    assert (face.landmarks[:, 1] >= top - 2).all() and (face.landmarks[:, 1] <= bottom + 2).all()


@pytest.mark.parametrize("which, expected", [("sample_a", 1), ("astronaut", 1), ("t1", 6)])
def test_dlib_real_photos(which, expected, dlib_detector, samples, insightface_t1, helpers):
    if which == "sample_a":
        image = helpers.load_rgb(samples / "old_w_scratch" / "a.png")
    elif which == "astronaut":
        from skimage import data

        image = data.astronaut()
    else:
        image = insightface_t1
    assert dlib_detector.upsample == 0
    faces = detect_faces(helpers.to_nchw(image), dlib_detector)
    assert len(faces) == 1 and len(faces[0]) == expected
    h, w = image.shape[:2]
    for f in faces[0]:
        assert f.image_index == 0 and np.isfinite(f.score)
        assert_plausible(f, h, w)
    boxes = np.array([f.box for f in faces[0]])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert len({tuple(np.round(c)) for c in centres}) == expected  # distinct faces


def test_detect_batch_sets_image_index(dlib_detector, insightface_t1, helpers):
    from skimage import data

    astro = helpers.to_nchw(data.astronaut())
    blank = torch.full_like(astro, 0.5)
    faces = detect_faces(torch.cat([blank, astro, astro]), dlib_detector)
    assert [len(f) for f in faces] == [0, 1, 1]
    assert faces[1][0].image_index == 1 and faces[2][0].image_index == 2
    np.testing.assert_array_equal(faces[1][0].landmarks, faces[2][0].landmarks)


def test_gray_and_rgba_detect_like_rgb(dlib_detector, helpers):
    from skimage import data

    x = helpers.to_nchw(data.astronaut())
    gray = x.mean(1, keepdim=True)
    ref = detect_faces(gray.expand(-1, 3, -1, -1).contiguous(), dlib_detector)[0]
    got = detect_faces(gray, dlib_detector)[0]
    assert [f.box for f in got] == [f.box for f in ref] and len(got) >= 1
    rgba = torch.cat([x, torch.rand_like(x[:, :1])], 1)
    assert [f.box for f in detect_faces(rgba, dlib_detector)[0]] == \
        [f.box for f in detect_faces(x, dlib_detector)[0]]


def test_five_points_truncate_like_the_reference():
    pts = np.zeros((68, 2), np.int64)
    pts[36], pts[39] = (10, 21), (13, 24)  # means 11.5, 22.5 -> 11, 22
    pts[42], pts[45] = (-3, 5), (0, 8)  # means -1.5, 6.5 -> int() truncates toward 0: -1, 6
    pts[30], pts[48], pts[54] = (7, 9), (1, 2), (3, 4)
    np.testing.assert_array_equal(five_points_from_68(pts),
                                  [[11, 22], [-1, 6], [7, 9], [1, 2], [3, 4]])


def test_predictor_found_without_importing_the_package():
    path = shape_predictor_path()
    assert path.is_file() and path.name == "shape_predictor_68_face_landmarks.dat"
    assert "face_recognition_models" not in sys.modules


def test_factory_kinds(tiny_scrfd_root, tmp_path, no_network):
    assert make_face_detector("off") is None
    assert isinstance(make_face_detector("dlib"), DlibFaceDetector)
    assert isinstance(make_face_detector("auto"), DlibFaceDetector)  # no insightface root
    assert isinstance(make_face_detector("auto", insightface_root=tmp_path), DlibFaceDetector)
    det = make_face_detector("auto", insightface_root=tiny_scrfd_root)
    assert isinstance(det, InsightFaceDetector) and isinstance(det, FaceDetector)
    # the pack folder or the file itself work too
    assert find_insightface_model(tiny_scrfd_root / "models" / "buffalo_l").name == "det_10g.onnx"
    f = tiny_scrfd_root / "models" / "buffalo_l" / "det_10g.onnx"
    assert find_insightface_model(f) == f
    with pytest.raises(InputError, match="expected one of"):
        make_face_detector("retinaface")


def test_insightface_missing_files_name_folder_and_file(tmp_path):
    with pytest.raises(OldPhotoError) as e:
        make_face_detector("insightface", insightface_root=tmp_path, pack="antelope")
    msg = str(e.value)
    assert "det_10g.onnx" in msg and str(tmp_path / "models" / "antelope") in msg
    assert "never downloads" in msg
    with pytest.raises(OldPhotoError, match="no model folder"):
        make_face_detector("insightface")


def test_missing_packages_give_install_hints(monkeypatch, tiny_scrfd_root):
    import oldphoto_core.faces.dlib_backend as dlib_backend

    dlib_backend._load.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(OldPhotoError, match=r'pip install "oldphoto\[faces\]"'):
        DlibFaceDetector()
    monkeypatch.setattr("oldphoto_core.faces.detect._has_module", lambda name: False)
    with pytest.raises(OldPhotoError, match=r"oldphoto\[faces\]"):
        make_face_detector("auto", insightface_root=tiny_scrfd_root)
    monkeypatch.setitem(sys.modules, "insightface.model_zoo.scrfd", None)
    with pytest.raises(OldPhotoError, match="insightface and onnxruntime"):
        make_face_detector("insightface", insightface_root=tiny_scrfd_root)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(OldPhotoError, match="face-recognition-models"):
        shape_predictor_path()
    dlib_backend._load.cache_clear()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 8, 8), np.float32), "torch.Tensor"),
    (torch.zeros(3, 8, 8), "rank 4"),
    (torch.zeros(1, 8, 8, 3), "channels"),
    (torch.zeros(0, 3, 8, 8), "empty"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
    (torch.full((1, 3, 8, 8), 2.0), r"\[0, 1\]"),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
])
def test_input_checks(bad, match, dlib_detector):
    with pytest.raises(InputError, match=match):
        detect_faces(bad, dlib_detector)


def test_detectors_reject_wrong_arrays(dlib_detector, tiny_scrfd_root):
    det = make_face_detector("insightface", insightface_root=tiny_scrfd_root)
    for d in (dlib_detector, det):
        with pytest.raises(InputError, match="uint8"):
            d.detect(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="FaceDetector"):
        detect_faces(torch.zeros(1, 3, 8, 8), object())
