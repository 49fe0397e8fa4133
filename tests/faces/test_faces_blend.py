"""Blending against a scikit-image/OpenCV re-statement of ``align_warp_back_multiple_dlib.py``:
faces in the middle, touching the border, overlapping, and larger than the photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from numeric_bounds import gamma, unit_roundoff

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, align_faces, blend_faces, blend_window, match_histograms

skt = pytest.importorskip("skimage.transform")


def lookup_match(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Histogram matching as the reference describes it, one level at a time."""
    out = np.empty_like(source)
    for c in range(source.shape[2]):
        s_cdf = np.cumsum(np.histogram(source[..., c], 256, (0, 256))[0]).astype(float)
        r_cdf = np.cumsum(np.histogram(reference[..., c], 256, (0, 256))[0]).astype(float)
        s_cdf, r_cdf = s_cdf / s_cdf.max(), r_cdf / r_cdf.max()
        table = np.zeros(256)
        last = 0
        for s in range(256):
            for r in range(256):
                if r_cdf[r] >= s_cdf[s]:
                    last = r
                    break
            table[s] = last
        out[..., c] = table[source[..., c]]
    return out


def reference_blend(image: np.ndarray, faces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Stage 4 of the reference with scikit-image and OpenCV; returns float in [0, 1]."""
    h, w = image.shape[:2]
    blended = image
    for matrix, restored in faces:
        size = restored.shape[0]
        t = skt.SimilarityTransform(matrix=matrix)
        crop = skt.warp(image, t, output_shape=(size, size, 3), preserve_range=True)
        ones = skt.warp(np.ones_like(image), t, output_shape=(size, size, 3), order=0,
                        preserve_range=True)
        face = lookup_match(restored, crop.astype(np.uint8))
        back = skt.warp(face, t.inverse, output_shape=(h, w, 3), order=3, preserve_range=True)
        mask = skt.warp(ones, t.inverse, output_shape=(h, w, 3), order=0, preserve_range=True)
        mask = cv2.erode(mask * 255.0, np.ones((9, 9), np.uint8), iterations=3)
        mask = cv2.GaussianBlur(mask, (25, 25), 0) / 255.0
        blended = np.clip((back * mask + (1 - mask) * blended) / 255.0, 0, 1) * 255.0
    return blended / 255.0


def make_faces(rng, image, landmark_sets, size):
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    faces = [Face(box=(0, 0, 1, 1), score=1, landmarks=lm) for lm in landmark_sets]
    aligned = align_faces(x, [faces], face_size=size)[0]
    restored = [rng.integers(0, 256, (size, size, 3)).astype(np.uint8) for _ in aligned]
    # a smooth "enhanced" face so that the bicubic warp has something to interpolate
    restored = [cv2.GaussianBlur(r, (7, 7), 2) for r in restored]
    enhanced = [f.with_(enhanced=torch.from_numpy(r).permute(2, 0, 1).float() / 255)
                for f, r in zip(aligned, restored, strict=True)]
    return x, enhanced, restored


def landmarks(centre, scale, angle=0.2):
    base = np.array([[-0.3, -0.25], [0.3, -0.25], [0.0, 0.05], [-0.22, 0.35], [0.22, 0.35]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.round(base @ rot.T * scale + np.asarray(centre, float))


@pytest.mark.parametrize("case", ["middle", "border", "overlap", "huge"])
def test_blend_matches_reference(case):
    rng = np.random.default_rng(["middle", "border", "overlap", "huge"].index(case))
    image = cv2.GaussianBlur(rng.integers(0, 256, (140, 180, 3)).astype(np.uint8), (5, 5), 1)
    sets = {
        "middle": [landmarks((90, 70), 50)],
        "border": [landmarks((8, 10), 60), landmarks((175, 130), 45, -0.4)],
        "overlap": [landmarks((80, 70), 50), landmarks((100, 80), 55, -0.3)],
        "huge": [landmarks((90, 70), 700)],  # crop pixels are ~7 photo pixels: window = photo
    }[case]
    x, faces, restored = make_faces(rng, image, sets, 64)
    ours = blend_faces(x, [faces])[0].permute(1, 2, 0).double().numpy()
    ref = reference_blend(image, [(f.matrix, r) for f, r in zip(faces, restored, strict=True)])
    # The same float64 operations, except that ours reads the photo as float32 (image / 255,
    # off by u |x|), writes float32 (u again) and reads the float32 result of an earlier face
    # where faces overlap: (faces + 1) u for values <= 1, plus float64 rounding of the warps
    # and blurs (about a hundred operations on values <= 255, scaled by 1/255).
    tol = (len(faces) + 1) * unit_roundoff() + gamma(100, torch.float64)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol)
    # 8-bit output: identical unless a value fell within tol of a rounding tie (none does in
    # these seeded cases; their values are the same on every CPU)
    np.testing.assert_array_equal(np.rint(ours * 255), np.rint(ref * 255))
    touched = np.zeros(image.shape[:2], bool)
    for f in faces:
        win = blend_window(f, *image.shape[:2])
        touched[win.slices] |= win.weight > 0
    assert touched.any()
    keep = torch.from_numpy(~touched)
    assert torch.equal(blend_faces(x, [faces])[0][:, keep], x[0][:, keep])


def test_match_histograms_is_the_lookup():
    rng = np.random.default_rng(5)
    for _ in range(5):
        src = rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)
        ref = (rng.beta(2, 5, (50, 30, 3)) * 255).astype(np.uint8)
        np.testing.assert_array_equal(match_histograms(src, ref), lookup_match(src, ref))
    flat = np.full((8, 8, 3), 7, np.uint8)
    np.testing.assert_array_equal(match_histograms(flat, flat), flat)
    with pytest.raises(InputError):
        match_histograms(src.astype(np.float32), ref)


def test_no_faces_and_errors():
    x = torch.rand(2, 3, 20, 30)
    out = blend_faces(x, [[], []])
    assert torch.equal(out, x) and out is not x
    face = Face(box=(0, 0, 1, 1), score=1, landmarks=landmarks((15, 10), 10))
    with pytest.raises(InputError, match="aligned and enhanced"):
        blend_faces(x, [[face], []])
    with pytest.raises(InputError, match="one list per batch item"):
        blend_faces(x, [[]])
    with pytest.raises(InputError, match="not been aligned"):
        blend_window(face, 20, 30)


def test_face_outside_the_image_and_wrong_crop_size():
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (60, 70, 3)).astype(np.uint8)
    x, faces, _ = make_faces(rng, image, [landmarks((35, 30), 25)], 64)
    away = faces[0].with_(matrix=faces[0].matrix @ np.array([[1, 0, 900], [0, 1, 0], [0, 0, 1]]))
    assert blend_window(away, 60, 70).weight.size == 0
    assert torch.equal(blend_faces(x, [[away]]), x)
    small = faces[0].with_(enhanced=faces[0].enhanced[:, :32, :32])
    with pytest.raises(InputError, match="face_size"):
        blend_faces(x, [[small]])


def test_gray_and_rgba_keep_their_channels():
    rng = np.random.default_rng(6)
    gray_u8 = rng.integers(0, 256, (100, 120, 1)).astype(np.uint8)
    image = np.repeat(gray_u8, 3, axis=2)
    x_rgb, faces, _ = make_faces(rng, image, [landmarks((60, 50), 40)], 64)
    rgb_out = blend_faces(x_rgb, [faces])
    gray_out = blend_faces(x_rgb[:, :1], [faces])
    assert gray_out.shape == (1, 1, 100, 120)
    win = blend_window(faces[0], 100, 120)
    inside = torch.zeros(100, 120, dtype=torch.bool)
    inside[win.slices] = torch.from_numpy(win.weight > 0)
    luma = 0.299 * rgb_out[0, 0] + 0.587 * rgb_out[0, 1] + 0.114 * rgb_out[0, 2]
    # luma of float64 colours rounded once, vs luma of the float32-rounded colours in float32
    # (rounded weights, 3 products, 2 sums): at most 8 roundings of values <= 1
    torch.testing.assert_close(gray_out[0, 0][inside], luma[inside], atol=gamma(8), rtol=0)
    assert torch.equal(gray_out[0, 0][~inside], x_rgb[0, 0][~inside])
    alpha = torch.rand(1, 1, 100, 120)
    rgba_out = blend_faces(torch.cat([x_rgb, alpha], 1), [faces])
    assert torch.equal(rgba_out[:, 3:], alpha) and torch.equal(rgba_out[:, :3], rgb_out)


def test_blend_does_not_touch_its_inputs():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (90, 90, 3)).astype(np.uint8)
    x, faces, _ = make_faces(rng, image, [landmarks((45, 45), 40)], 64)
    before, enh = x.clone(), faces[0].enhanced.clone()
    blend_faces(x, [faces])
    assert torch.equal(x, before) and torch.equal(faces[0].enhanced, enh)
