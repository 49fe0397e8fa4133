"""Procedural damage textures: scratches, cracks, dust, creases, paper, holes, elastic warp.

No texture set can be downloaded here, so the scratch and paper textures of the paper are drawn
procedurally with OpenCV on the CPU, at the image's full resolution (anti-aliased, sub-pixel
accurate polylines are cheaper than drawing small and upsampling, and stay sharp). Each drawing
function takes its own ``numpy.random.Generator`` and returns a texture plus the list of
parameters it drew (JSON-serialisable; the geometry itself is reproduced from the seed).

Texture layers are ``uint8`` ``[H, W]`` images, 0 = nothing drawn, 255 = full-strength damage;
the blending in :mod:`.structured` turns them into lightening of the photo.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from ._random import bernoulli, randint, smooth_noise, uniform
from .config import DegradeConfig

__all__ = ["draw_scratches", "draw_cracks", "draw_dust", "draw_creases", "elastic_distort",
           "paper_tone", "paper_texture", "draw_holes", "texture_scale"]

_SHIFT = 4  # fixed-point bits of OpenCV drawing coordinates: 1/16 px accuracy
_ONE = 1 << _SHIFT
_SCRATCH_POINTS = 48  # vertices of a scratch polyline
_SCRATCH_WOBBLE = 0.012  # random-walk step of a scratch's heading (radians per vertex)
_SCRATCH_PIECES = (1, 4)  # a scratch is cut into this many pieces...
_SCRATCH_PIECE_KEEP = 0.8  # ...each kept with this probability (broken scratches)
_CRACK_STEP = 3.0  # px at the reference size between crack (and fold) vertices
_CRACK_WOBBLE = 0.05  # heading random walk of cracks (radians per vertex)
_CRACK_JAG = 0.6  # std of the zig-zag of crack vertices (px at the reference size)
_DUST_FIBRE_PROB = 0.12  # fraction of dust that are short curved fibres instead of specks
_HOLE_VERTICES = 96  # vertices of a hole's outline


def texture_scale(height: int, width: int, config: DegradeConfig) -> float:
    """Pixels of this image per pixel of an image with short side ``config.reference_size``
    (``config.texture_scale`` when set: the image is a crop of a photo of that scale)."""
    if config.texture_scale is not None:
        return float(config.texture_scale)
    return min(height, width) / config.reference_size


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float ``[N, 2]`` (x, y) → OpenCV fixed-point int32 ``[N, 1, 2]``."""
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _stroke(width_px: float, intensity: float) -> tuple[int, int]:
    """OpenCV thickness and 0..255 colour of a line ``width_px`` wide.

    Lines thinner than one pixel are drawn one pixel wide and proportionally fainter, which is
    what a thinner line looks like once sampled.
    """
    thickness = max(1, int(round(width_px)))
    return thickness, int(round(255 * intensity * min(1.0, width_px)))


def _path(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, n: int,
          turn: float, wobble: float) -> tuple[np.ndarray, np.ndarray]:
    """A curve of ``n`` vertices: constant turning ``turn`` in total plus a random walk.

    Returns:
        vertices ``[n, 2]`` (x, y) and the heading at each vertex ``[n]``.
    """
    t = np.linspace(0.0, 1.0, n)
    heading = angle + turn * t + np.cumsum(rng.normal(0.0, wobble, n))
    step = length / max(1, n - 1)
    deltas = np.stack([np.cos(heading), np.sin(heading)], axis=1) * step
    points = start + np.concatenate([np.zeros((1, 2)), np.cumsum(deltas[:-1], axis=0)])
    return points, heading


def _draw_broken(rng: np.random.Generator, canvas: np.ndarray, points: np.ndarray, pieces: int,
                 keep_prob: float, width_px: float, intensity: float) -> tuple[int, int]:
    """Draw a polyline cut into ``pieces`` runs, each kept with ``keep_prob`` (at least one)
    and dimmed by a random factor in [0.6, 1]: broken, uneven lines.

    Returns:
        the number of pieces and of drawn pieces.
    """
    n = len(points)
    pieces = max(1, min(pieces, n - 1))
    cuts = np.sort(rng.choice(np.arange(1, n - 1), pieces - 1, replace=False))
    runs = np.split(np.arange(n), cuts)
    keep = rng.random(pieces) < keep_prob
    keep[int(rng.integers(pieces))] = True  # never lose the whole line
    fades = rng.uniform(0.6, 1.0, pieces)
    for run, kept, fade in zip(runs, keep, fades, strict=True):
        if kept and len(run) >= 2:
            thickness, colour = _stroke(width_px, intensity * fade)
            cv2.polylines(canvas, [_fixed(points[run])], False, colour, thickness, cv2.LINE_AA,
                          _SHIFT)
    return pieces, int(keep.sum())


def draw_scratches(rng: np.random.Generator, height: int, width: int,
                   config: DegradeConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Thin, long, gently curved scratches, sometimes broken, often vertical (film scratches).

    Args:
        rng: the scratches' generator.
        height, width: canvas size.
        config: ``scratch_*`` ranges and ``reference_size``.

    Returns:
        ``uint8`` ``[height, width]`` texture and one parameter dict per scratch.
    """
    canvas = np.zeros((height, width), np.uint8)
    scale, short = texture_scale(height, width, config), min(height, width)
    params = []
    for _ in range(randint(rng, config.scratch_count)):
        vertical = bernoulli(rng, config.scratch_vertical_prob)
        angle = (math.pi / 2 + rng.normal(0.0, 0.08)) if vertical else rng.uniform(0, math.pi)
        frac = uniform(rng, config.scratch_length)
        length = frac * short
        turn = uniform(rng, config.scratch_curvature) * (1 if rng.random() < 0.5 else -1)
        w = uniform(rng, config.scratch_width)
        intensity = uniform(rng, config.scratch_intensity)
        centre = rng.uniform(0, 1, 2) * (width, height)
        start = centre - 0.5 * length * np.array([math.cos(angle), math.sin(angle)])
        points, _ = _path(rng, start, angle, length, _SCRATCH_POINTS, turn, _SCRATCH_WOBBLE)
        pieces, drawn = _draw_broken(rng, canvas, points, randint(rng, _SCRATCH_PIECES),
                                     _SCRATCH_PIECE_KEEP, w * scale, intensity)
        params.append({"vertical": vertical, "angle": float(angle), "length": frac,
                       "curvature": turn, "width": w, "intensity": intensity,
                       "pieces": pieces, "pieces_drawn": drawn,
                       "centre": [float(centre[0] / width), float(centre[1] / height)]})
    return canvas, params


def _draw_crack(rng: np.random.Generator, canvas: np.ndarray, start: np.ndarray, angle: float,
                length: float, width_px: float, intensity: float, branches: int,
                scale: float) -> None:
    """A jagged trunk plus ``branches`` thinner, shorter branches grown from random vertices."""
    segments = []  # (points, headings, length, width) of every drawn segment
    step = max(1.5, _CRACK_STEP * scale)
    for i in range(branches + 1):
        if i == 0:
            origin, heading0, seg_len, seg_w = start, angle, length, width_px
        else:
            p_pts, p_head, p_len, p_w = segments[int(rng.integers(len(segments)))]
            k = int(rng.integers(0, max(1, len(p_pts) - 1)))
            side = 1 if rng.random() < 0.5 else -1
            origin, heading0 = p_pts[k], p_head[k] + side * rng.uniform(0.35, 1.2)
            seg_len, seg_w = p_len * rng.uniform(0.25, 0.6), p_w * 0.7
        n = max(3, int(seg_len / step) + 1)
        points, headings = _path(rng, origin, heading0, seg_len, n, 0.0, _CRACK_WOBBLE)
        points = _jagged(rng, points, scale)
        thickness, colour = _stroke(seg_w, intensity)
        cv2.polylines(canvas, [_fixed(points)], False, colour, thickness, cv2.LINE_AA, _SHIFT)
        segments.append((points, headings, seg_len, seg_w))


def _jagged(rng: np.random.Generator, points: np.ndarray, scale: float) -> np.ndarray:
    """Zig-zag a polyline: independent jitter of every vertex (cracks are sharp, not smooth)."""
    return points + rng.normal(0.0, _CRACK_JAG * max(scale, 0.5), points.shape)


def draw_cracks(rng: np.random.Generator, height: int, width: int,
                config: DegradeConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Branching cracks of the emulsion: a jagged trunk with thinner side branches.

    Args:
        rng: the cracks' generator.
        height, width: canvas size.
        config: ``crack_*`` ranges and ``reference_size``.

    Returns:
        ``uint8`` ``[height, width]`` texture and one parameter dict per crack.
    """
    canvas = np.zeros((height, width), np.uint8)
    scale, short = texture_scale(height, width, config), min(height, width)
    params = []
    for _ in range(randint(rng, config.crack_count)):
        length = uniform(rng, config.crack_length)
        w = uniform(rng, config.crack_width)
        intensity = uniform(rng, config.crack_intensity)
        branches = randint(rng, config.crack_branches)
        start = rng.uniform(0, 1, 2) * (width, height)
        angle = rng.uniform(0, 2 * math.pi)
        _draw_crack(rng, canvas, start, angle, length * short, w * scale, intensity, branches,
                    scale)
        params.append({"length": length, "width": w, "intensity": intensity,
                       "branches": branches, "angle": float(angle),
                       "start": [float(start[0] / width), float(start[1] / height)]})
    return canvas, params


def draw_dust(rng: np.random.Generator, height: int, width: int,
              config: DegradeConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Dust specks (small ellipses, mostly tiny) and a few short curved fibres.

    Args:
        rng: the dust's generator.
        height, width: canvas size.
        config: ``dust_*`` ranges and ``reference_size``.

    Returns:
        ``uint8`` ``[height, width]`` texture and the drawn density and counts.
    """
    canvas = np.zeros((height, width), np.uint8)
    scale = texture_scale(height, width, config)
    density = uniform(rng, config.dust_density)
    count = int(round(density * height * width / config.reference_size**2))
    lo, hi = config.dust_radius
    # Vectorised draws; the loop below only calls OpenCV.
    centres = rng.uniform(0, 1, (count, 2)) * (width, height)
    radii = (lo + (hi - lo) * rng.random(count) ** 2) * scale  # skewed towards small specks
    aspect = rng.uniform(0.5, 1.0, count)
    angles = rng.uniform(0, 180, count)
    intensity = config.dust_intensity[0] + (
        config.dust_intensity[1] - config.dust_intensity[0]) * rng.random(count)
    fibre = rng.random(count) < _DUST_FIBRE_PROB
    fibres = 0
    for i in range(count):
        if fibre[i]:
            length = radii[i] * rng.uniform(6, 16)
            points, _ = _path(rng, centres[i], rng.uniform(0, 2 * math.pi), length, 8,
                              rng.uniform(-2, 2), 0.1)
            thickness, colour = _stroke(max(0.5, 0.5 * radii[i]), float(intensity[i]))
            cv2.polylines(canvas, [_fixed(points)], False, colour, thickness, cv2.LINE_AA,
                          _SHIFT)
            fibres += 1
        else:
            r = max(radii[i], 0.5)
            axes = (int(round(r * _ONE)), int(round(r * aspect[i] * _ONE)))
            centre = (int(round(centres[i, 0] * _ONE)), int(round(centres[i, 1] * _ONE)))
            colour = int(round(255 * intensity[i] * min(1.0, radii[i] / 0.5)))
            cv2.ellipse(canvas, centre, axes, float(angles[i]), 0, 360, colour, -1,
                        cv2.LINE_AA, _SHIFT)
    return canvas, {"density": density, "count": count, "fibres": fibres,
                    "specks": count - fibres}


def draw_creases(rng: np.random.Generator, height: int, width: int,
                 config: DegradeConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Folds crossing the whole photo, like the cracked folds of real prints.

    Each fold is a faint soft band (the bent paper) with a jagged, bright, sometimes broken core
    line (the cracked emulsion), small flakes along it and a few short crack spurs.

    Args:
        rng: the creases' generator.
        height, width: canvas size.
        config: ``crease_*`` ranges and ``reference_size``.

    Returns:
        ``uint8`` ``[height, width]`` texture and one parameter dict per crease.
    """
    canvas = np.zeros((height, width), np.uint8)
    scale, short = texture_scale(height, width, config), min(height, width)
    diag = math.hypot(height, width)
    params = []
    for _ in range(randint(rng, config.crease_count)):
        angle = rng.uniform(0, math.pi)
        band_w = uniform(rng, config.crease_band_width)
        band_i = uniform(rng, config.crease_band_intensity)
        core_w = uniform(rng, config.crease_core_width)
        core_i = uniform(rng, config.crease_core_intensity)
        through = rng.uniform(0.2, 0.8, 2) * (width, height)
        bow = rng.uniform(-0.2, 0.2)
        length = 1.2 * diag
        start = through - 0.5 * length * np.array([math.cos(angle), math.sin(angle)])
        n = max(8, int(length / max(1.5, _CRACK_STEP * scale)) + 1)
        points, headings = _path(rng, start, angle - bow / 2, length, n, bow, 0.002)
        layer = np.zeros_like(canvas)
        thickness, band_colour = _stroke(band_w * scale, band_i)
        cv2.polylines(layer, [_fixed(points)], False, band_colour, thickness, cv2.LINE_AA, _SHIFT)
        layer = cv2.GaussianBlur(layer, (0, 0), max(0.5, band_w * scale / 3))
        core = _jagged(rng, points, scale)
        _draw_broken(rng, layer, core, min(n - 1, 2 + n // 100), 0.85, core_w * scale, core_i)
        flakes = int(rng.integers(n // 60, n // 20 + 1))
        flake_colour = int(round(255 * core_i))
        for k in rng.integers(0, n, flakes):  # chips of emulsion flaked off along the fold
            r = max(0.5, rng.uniform(0.6, 2.2) * scale * core_w)
            axes = (int(round(r * _ONE)), int(round(max(0.5, r * rng.uniform(0.4, 1)) * _ONE)))
            centre = (int(round(core[k, 0] * _ONE)), int(round(core[k, 1] * _ONE)))
            cv2.ellipse(layer, centre, axes, math.degrees(headings[k]), 0, 360, flake_colour, -1,
                        cv2.LINE_AA, _SHIFT)
        spurs = int(rng.integers(2, 9))
        for _s in range(spurs):
            k = int(rng.integers(0, n))
            side = 1 if rng.random() < 0.5 else -1
            _draw_crack(rng, layer, core[k], headings[k] + side * rng.uniform(0.5, 1.3),
                        rng.uniform(0.01, 0.06) * short, core_w * scale * 0.7, core_i * 0.9,
                        int(rng.integers(0, 3)), scale)
        np.maximum(canvas, layer, out=canvas)
        params.append({"angle": float(angle), "band_width": band_w, "band_intensity": band_i,
                       "core_width": core_w, "core_intensity": core_i, "bow": float(bow),
                       "flakes": flakes, "spurs": spurs,
                       "through": [float(through[0] / width), float(through[1] / height)]})
    return canvas, params


def elastic_distort(layers: np.ndarray, rng: np.random.Generator, alpha_px: float,
                    sigma_px: float) -> np.ndarray:
    """Elastic distortion (Simard et al.): warp by a smooth random displacement field.

    Args:
        layers: ``[H, W]`` or ``[H, W, K]`` (K <= 4) image, any OpenCV depth.
        rng: generator of the displacement field.
        alpha_px: displacement std in pixels.
        sigma_px: correlation length of the field in pixels.

    Returns:
        The warped layers, same shape and dtype (zeros enter from outside).
    """
    height, width = layers.shape[:2]
    cells = max(1.0, min(height, width) / max(sigma_px, 1.0))
    if alpha_px <= 0:
        return layers.copy()
    dx = smooth_noise(rng, height, width, cells=cells) * alpha_px
    dy = smooth_noise(rng, height, width, cells=cells) * alpha_px
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(layers, gx + dx, gy + dy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def paper_tone(brightness: float, warmth: float, channels: int) -> np.ndarray:
    """The colour of aged photo paper: ``[channels]`` float32 (grey for one channel)."""
    rgb = brightness * np.array([1.0, 1.0 - 0.12 * warmth, 1.0 - 0.38 * warmth], np.float32)
    if channels == 1:
        return np.array([rgb @ np.array([0.299, 0.587, 0.114], np.float32)], np.float32)
    return rgb


def paper_texture(rng: np.random.Generator, height: int, width: int,
                  tone: np.ndarray) -> np.ndarray:
    """Aged paper: the tone, mottled by low-frequency stains and fine fibre noise.

    Args:
        rng: generator of the mottling.
        height, width: size.
        tone: ``[C]`` paper colour (see :func:`paper_tone`).

    Returns:
        ``float32`` ``[C, height, width]`` in [0, 1].
    """
    mottle = smooth_noise(rng, height, width, cells=4, octaves=4) * 0.06
    fibres = smooth_noise(rng, height, width, cells=min(height, width) / 3) * 0.02
    shade = 1.0 + mottle + fibres
    return np.clip(tone[:, None, None] * shade[None], 0.0, 1.0).astype(np.float32)


def draw_holes(rng: np.random.Generator, height: int, width: int,
               config: DegradeConfig) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Feathered holes of random shape, often torn into the border, revealing the paper.

    Args:
        rng: the holes' generator.
        height, width: canvas size.
        config: ``hole_*`` ranges and ``reference_size``.

    Returns:
        ``float32`` ``[height, width]`` opacity of the paper (0..1) and one dict per hole.
    """
    scale, short = texture_scale(height, width, config), min(height, width)
    alpha = np.zeros((height, width), np.float32)
    params = []
    for _ in range(randint(rng, config.hole_count)):
        radius = uniform(rng, config.hole_radius)
        feather = uniform(rng, config.hole_feather)
        on_edge = bernoulli(rng, config.hole_edge_prob)
        if on_edge:  # centre on a random side (corners included): a torn border
            side, along = int(rng.integers(4)), rng.uniform(0, 1)
            centre = [(along, 0.0), (along, 1.0), (0.0, along), (1.0, along)][side]
        else:
            centre = tuple(rng.uniform(0.15, 0.85, 2))
        # A star-shaped outline: a few random harmonics (the shape) plus jags (torn fibres).
        theta = np.linspace(0, 2 * math.pi, _HOLE_VERTICES, endpoint=False)
        harmonics = np.arange(1, 7)
        amp = rng.normal(0, 1, 6) / harmonics
        phase = rng.uniform(0, 2 * math.pi, 6)
        wobble = (amp[None] * np.cos(harmonics[None] * theta[:, None] + phase[None])).sum(1)
        r = radius * short * np.exp(0.45 * wobble + rng.normal(0, 0.06, _HOLE_VERTICES))
        points = np.stack([centre[0] * width + r * np.cos(theta),
                           centre[1] * height + r * np.sin(theta)], axis=1)
        # Draw and feather only the hole's bounding box (plus the blur's reach).
        sigma = feather * scale
        margin = int(math.ceil(3 * sigma)) + 2
        x0, y0 = np.floor(points.min(0)).astype(int) - margin
        x1, y1 = np.ceil(points.max(0)).astype(int) + margin
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        params.append({"radius": radius, "feather": feather, "on_edge": on_edge,
                       "centre": [float(centre[0]), float(centre[1])]})
        if x1 <= x0 or y1 <= y0:
            continue
        roi = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(roi, [_fixed(points - (x0, y0))], 255, cv2.LINE_AA, _SHIFT)
        hole = roi.astype(np.float32) / 255.0
        if sigma > 0.3:
            hole = cv2.GaussianBlur(hole, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        np.maximum(alpha[y0:y1, x0:x1], hole, out=alpha[y0:y1, x0:x1])
    return alpha, params
