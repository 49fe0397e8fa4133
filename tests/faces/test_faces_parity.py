"""Parity with the reference's face stages (detect_all_dlib, test_face, align_warp_back) run on
``$OLDPHOTO_PARITY_DIR/pipeline/face`` with synthetic weights, using the dlib backend.

Thresholds from TOLERANCES.md: same number of faces, boxes within 1 px, aligned PSNR >= 45 dB,
enhanced (from the reference's aligned crop) >= 99.5 % of values within 1 and none off by more
than 3, final PSNR >= 40 dB and pixels outside every blend region identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numeric_bounds import gamma, similarity_bound

from oldphoto_core.faces import (
    align_faces,
    blend_window,
    detect_faces,
    enhance_crops,
    face_template,
    restore_faces,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def case(face_case, helpers):
    folder, run = face_case
    kit = folder.parent.parent  # paths in run.json are relative to the kit
    files = run["files"]
    n = len(run["faces"])
    image = helpers.load_rgb(kit / files["input"])
    aligned_1 = helpers.load_rgb(kit / files["aligned_1"])
    return dict(run=run, image=image, x=helpers.to_nchw(image), size=aligned_1.shape[0],
                aligned=[helpers.load_rgb(kit / files[f"aligned_{k}"]) for k in range(1, n + 1)],
                enhanced=[helpers.load_rgb(kit / files[f"enhanced_{k}"])
                          for k in range(1, n + 1)],
                final=helpers.load_rgb(kit / files["final"]))


@pytest.fixture(scope="module")
def restored(case, dlib_detector, face_model):
    return restore_faces(case["x"], dlib_detector, face_model, face_size=case["size"])


def test_detections_match(case, dlib_detector):
    faces = detect_faces(case["x"], dlib_detector)[0]
    ref = case["run"]["faces"]
    assert len(faces) == len(ref) == len(case["aligned"])
    for f, r in zip(faces, ref, strict=True):
        assert np.abs(np.array(f.box) - np.array(r["box_ltrb"])).max() <= 1  # TOLERANCES.md
        np.testing.assert_array_equal(f.landmarks, np.array(r["five_points_xy"], np.float64))


def test_similarity_matches(case, dlib_detector):
    size = case["size"]
    faces = align_faces(case["x"], detect_faces(case["x"], dlib_detector), face_size=size)[0]
    for f, r in zip(faces, case["run"]["faces"], strict=True):
        # same landmarks (checked above); the reference's SVD estimate vs our closed form
        bound = similarity_bound(face_template(size), f.landmarks)
        assert (np.abs(f.matrix - np.array(r["similarity_aligned_to_original"])) <= bound).all()
        # least squares: the template's centroid lands on the landmarks' centroid, up to the
        # template's mean taken in float32 as the reference does (6 roundings of coordinates
        # <= size, times the scale), the matrix's own rounding and the float64 sums
        tpl = np.c_[face_template(size), np.ones(5)] @ f.matrix.T
        scale = np.abs(f.matrix[0, :2]).sum()
        centroid_tol = scale * gamma(6) * size + 2 * bound[0, 0] * size + bound[0, 2] \
            + gamma(8, torch.float64) * (np.abs(f.landmarks).max() + 1)
        assert np.abs(tpl[:, :2].mean(0) - f.landmarks.mean(0)).max() <= centroid_tol


def test_aligned_crops(case, restored, helpers):
    _, faces = restored
    for f, ref in zip(faces[0], case["aligned"], strict=True):
        ours = helpers.to_u8(f.aligned)
        assert ours.shape == ref.shape
        assert helpers.psnr(ours, ref) >= 45.0  # TOLERANCES.md


def test_enhanced_from_reference_crops(case, restored, face_model):
    _, faces = restored
    crops = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255
                         for a in case["aligned"]])
    ours_aligned = torch.stack([f.aligned for f in faces[0]])
    if torch.equal(crops, ours_aligned):  # same input, deterministic network: reuse the run
        out = torch.stack([f.enhanced for f in faces[0]])
    else:
        out = enhance_crops(crops, face_model)
    for k, ref in enumerate(case["enhanced"]):
        ours = torch.floor(out[k] * 255 + 0.5).clamp(0, 255).permute(1, 2, 0).numpy()
        diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
        # TOLERANCES.md: >= 99.5 % of values within 1 level, none off by more than 3
        assert (diff <= 1).mean() >= 0.995, f"face {k + 1}: {(diff > 1).mean():.4%} off by > 1"
        assert diff.max() <= 3


def test_final_image(case, restored, helpers):
    out, faces = restored
    ours = helpers.to_u8(out[0])
    ref, image = case["final"], case["image"]
    assert helpers.psnr(ours, ref) >= 40.0  # TOLERANCES.md
    h, w = image.shape[:2]
    touched = np.zeros((h, w), bool)
    for f in faces[0]:
        win = blend_window(f, h, w)
        touched[win.slices] |= win.weight > 0
    assert touched.any()
    np.testing.assert_array_equal(ours[~touched], image[~touched])
    np.testing.assert_array_equal(ref[~touched], image[~touched])
    # the float output is the input itself outside the blend regions
    assert torch.equal(out[0][:, torch.from_numpy(~touched)],
                       case["x"][0][:, torch.from_numpy(~touched)])
