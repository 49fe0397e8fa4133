"""Alignment: template, similarity estimate and warps against scikit-image (the reference's
library), batch alignment, channel handling and errors."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch
from numeric_bounds import similarity_bound

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, align_faces, estimate_similarity, face_template
from oldphoto_core.faces._warp import grid_from_matrix, sample

skt = pytest.importorskip("skimage.transform")
from skimage import img_as_ubyte  # noqa: E402


def sk_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if hasattr(skt.SimilarityTransform, "from_estimate"):
        return skt.SimilarityTransform.from_estimate(src, dst).params
    t = skt.SimilarityTransform()
    t.estimate(src, dst)
    return t.params


def random_landmarks(rng, centre, size) -> np.ndarray:
    """Plausible five points (eyes, nose, mouth corners) around ``centre``, integer like dlib."""
    base = np.array([[-0.3, -0.25], [0.3, -0.25], [0.0, 0.05], [-0.22, 0.35], [0.22, 0.35]])
    ang = rng.uniform(-0.5, 0.5)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    pts = base @ rot.T * size + np.asarray(centre) + rng.normal(0, 1.5, (5, 2))
    return np.round(pts)


def test_template_is_the_references():
    raw = np.array([196.0, 226.0, 316.0, 226.0, 256.0, 286.0, 220.0, 360.4, 292.0, 360.4],
                   np.float32) / 256.0 - 1.0
    for size in (256, 512):
        expected = ((raw * 1.3 + 1) / 2 * size).reshape(5, 2)
        got = face_template(size)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_similarity_matches_skimage():
    rng = np.random.default_rng(0)
    tpl = face_template(256)
    for k in range(300):
        dst = rng.normal(0, 80, (5, 2)) + rng.uniform(0, 500, 2)
        if k % 3 == 1:  # mirrored configuration: the best rotation still wins, no reflection
            dst = tpl.astype(np.float64) * [-1, 1] + rng.normal(0, 2, (5, 2))
        if k % 3 == 2:
            dst = np.round(dst)
        src = tpl if k % 2 else rng.normal(0, 50, (5, 2))
        ref = sk_similarity(src, dst)
        ours = estimate_similarity(src, dst)
        # closed form vs SVD: both backward stable, within the similarity rounding bound
        assert (np.abs(ours - ref) <= similarity_bound(src, dst)).all(), k
        assert ours[0, 0] == ours[1, 1] and ours[0, 1] == -ours[1, 0]  # built as [[a, -b], [b, a]]


def test_similarity_degenerate_and_bad_shapes():
    assert np.isnan(estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))).all()
    with pytest.raises(InputError):
        estimate_similarity(np.ones((5, 2)), np.ones((4, 2)))


@pytest.mark.parametrize("order", [0, 1, 3])
def test_warp_kernels_match_skimage(order):
    rng = np.random.default_rng(order)
    img = rng.integers(0, 256, (41, 57, 3)).astype(np.uint8)
    src = torch.from_numpy(img).permute(2, 0, 1)[None]
    for _ in range(6):
        t = skt.SimilarityTransform(scale=rng.uniform(0.4, 2.5), rotation=rng.uniform(-1, 1),
                                    translation=rng.uniform(-15, 30, 2))
        for tf in (t, t.inverse):
            ref = skt.warp(img, tf, output_shape=(37, 49, 3), order=order, preserve_range=True)
            x, y = grid_from_matrix(torch.from_numpy(tf.params)[None], 37, 49)
            ours = sample(src, torch.zeros(1, dtype=torch.long), x, y, order=order)[0]
            ours = ours.permute(1, 2, 0).numpy()
            if order == 3:  # scikit-image clips to the input range (widened to cval 0)
                ours = np.clip(ours, 0, img.max())
            # the same element-wise float64 operations in the same order (no reductions, no
            # fused multiply-adds): correctly rounded on every CPU, so the same bits
            np.testing.assert_array_equal(ours, ref)


def test_align_matches_skimage_crops_near_borders():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (150, 190, 3)).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    centres = [(95, 75), (10, 12), (185, 140), (60, 148)]  # middle, corners, bottom edge
    faces = [Face(box=(0, 0, 1, 1), score=1, landmarks=random_landmarks(rng, c, 50))
             for c in centres]
    for size in (64, 256):
        out = align_faces(x, [faces], face_size=size)[0]
        assert len(out) == len(faces)
        for f in out:
            t = skt.SimilarityTransform(matrix=f.matrix)
            ref = img_as_ubyte(skt.warp(img, t, output_shape=(size, size, 3)))
            ours = np.rint(f.aligned.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            np.testing.assert_array_equal(ours, ref)
            tpl = face_template(size)
            assert (np.abs(f.matrix - sk_similarity(tpl, f.landmarks))
                    <= similarity_bound(tpl, f.landmarks)).all()
            assert f.face_size == size and f.aligned.dtype == torch.float32


def test_align_batch_equals_one_by_one():
    rng = np.random.default_rng(2)
    x = torch.rand(3, 3, 96, 128)
    faces = [[Face(box=(0, 0, 1, 1), score=1, landmarks=random_landmarks(rng, (60, 50), 30))
              for _ in range(n)] for n in (2, 0, 3)]
    together = align_faces(x, faces, face_size=64)
    assert [len(f) for f in together] == [2, 0, 3]
    for i, item in enumerate(faces):
        alone = align_faces(x[i:i + 1], [item], face_size=64)[0]
        for a, b in zip(alone, together[i], strict=True):
            assert torch.equal(a.aligned, b.aligned) and b.image_index == i


def test_align_gray_rgba_and_degenerate():
    rng = np.random.default_rng(3)
    rgb = torch.rand(1, 3, 80, 80)
    face = Face(box=(0, 0, 1, 1), score=1, landmarks=random_landmarks(rng, (40, 40), 30))
    dead = Face(box=(0, 0, 1, 1), score=1, landmarks=np.full((5, 2), 7.0))
    ref = align_faces(rgb, [[face]], face_size=64)[0][0].aligned
    rgba = torch.cat([rgb, torch.zeros(1, 1, 80, 80)], 1)
    got = align_faces(rgba, [[face, dead]], face_size=64)[0]
    assert len(got) == 1 and torch.equal(got[0].aligned, ref)  # degenerate face dropped
    gray = rgb[:, :1]
    g = align_faces(gray, [[face]], face_size=64)[0][0].aligned
    assert g.shape == (3, 64, 64) and torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])


@pytest.mark.parametrize("kwargs, match", [({"face_size": 100}, "multiple of 32"),
                                           ({"face_size": 32}, "multiple of 32")])
def test_align_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        align_faces(torch.rand(1, 3, 8, 8), [[]], **kwargs)
    with pytest.raises(InputError, match="one list per batch item"):
        align_faces(torch.rand(2, 3, 8, 8), [[]])


def test_face_record_is_immutable_and_validated():
    f = Face(box=(1, 2, 3, 4), score=0.5, landmarks=np.zeros((5, 2)))
    with pytest.raises(AttributeError):
        f.score = 1.0  # type: ignore[misc]
    assert f.with_(score=2.0).score == 2.0 and f.score == 0.5
    with pytest.raises(ValueError, match=r"\[5, 2\]"):
        Face(box=(1, 2, 3, 4), score=0.5, landmarks=np.zeros((68, 2)))
    with pytest.raises(ValueError, match="not been aligned"):
        _ = f.inverse_matrix
    assert "box=(1.0, 2.0, 3.0, 4.0)" in repr(f)


def test_docstring_examples():
    for name in ("align", "blend", "enhance", "dlib_backend"):
        mod = importlib.import_module(f"oldphoto_core.faces.{name}")
        result = doctest.testmod(mod, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.__name__
