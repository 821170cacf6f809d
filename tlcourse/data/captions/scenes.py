"""Scenes of the caption data: attribute values, sampling and vectorised rendering.

A scene is a dict of integer arrays (``shape``, ``colour``, ``size``, ``position``, ``count``);
:func:`render_scenes` draws them with anti-aliased analytic masks on muted crops of the real
photographs shipped with scikit-learn. See :mod:`tlcourse.data.captions` for the whole picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from tlcourse.checks import check_choice, check_int

__all__ = [
    "SHAPES",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "COUNTS",
    "ATTRIBUTES",
    "DEFAULT_HOLDOUT",
    "combo_index",
    "combo_names",
    "sample_scenes",
    "render_scenes",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
COUNTS: tuple[int, ...] = (1, 2, 3)
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position", "count")
_VALUES: dict[str, tuple] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "size": SIZES,
    "position": POSITIONS,
    "count": COUNTS,
}

#: (shape, colour) pairs absent from the training split: one per shape and one per colour.
DEFAULT_HOLDOUT: tuple[tuple[str, str], ...] = (
    ("circle", "green"),
    ("square", "purple"),
    ("triangle", "red"),
    ("cross", "yellow"),
    ("star", "blue"),
)

_RADIUS = (3.2, 5.2)  # object radius in pixels: small, large (at 32×32)
_PHOTO_CONTRAST = 0.45  # photo backgrounds are muted towards grey by this factor

_RGB = np.array(
    [
        [0.90, 0.12, 0.10],  # red
        [0.15, 0.72, 0.20],  # green
        [0.15, 0.35, 0.95],  # blue
        [0.97, 0.88, 0.12],  # yellow
        [0.62, 0.20, 0.82],  # purple
    ],
    dtype=np.float32,
)


def combo_index(shape: np.ndarray | torch.Tensor | int, colour: np.ndarray | torch.Tensor | int):
    """Index of the (shape, colour) combination: ``shape * len(COLOURS) + colour``."""
    return shape * len(COLOURS) + colour


def combo_names() -> list[str]:
    """Names of the 25 (shape, colour) classes, in :func:`combo_index` order ("red circle", ...)."""
    return [f"{c} {s}" for s in SHAPES for c in COLOURS]


def _holdout_mask(holdout: Sequence[tuple[str, str]]) -> np.ndarray:
    """Boolean (n_shapes, n_colours) matrix, True for held-out (shape, colour) pairs."""
    mask = np.zeros((len(SHAPES), len(COLOURS)), dtype=bool)
    for pair in holdout:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"holdout must hold (shape, colour) pairs, got {pair!r}")
        shape, colour = pair
        check_choice("holdout shape", shape, SHAPES)
        check_choice("holdout colour", colour, COLOURS)
        mask[SHAPES.index(shape), COLOURS.index(colour)] = True
    if mask.all(axis=0).any() or mask.all(axis=1).any():
        raise ValueError("holdout must leave every shape and every colour at least one training combination")
    return mask


def sample_scenes(
    n: int,
    rng: np.random.Generator,
    combos: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Draw ``n`` scenes: a dict of int arrays ``shape, colour, size, position, count`` (``count`` in 1..3).

    ``combos`` (optional) is a boolean ``(n_shapes, n_colours)`` matrix of the allowed
    (shape, colour) pairs; pairs are drawn uniformly among the allowed ones.
    """
    n = check_int("n", n, minimum=0)
    if combos is None:
        combos = np.ones((len(SHAPES), len(COLOURS)), dtype=bool)
    allowed = np.flatnonzero(combos.ravel())
    if len(allowed) == 0:
        raise ValueError("combos allows no (shape, colour) pair")
    pair = rng.choice(allowed, size=n)
    return {
        "shape": pair // len(COLOURS),
        "colour": pair % len(COLOURS),
        "size": rng.integers(0, len(SIZES), n),
        "position": rng.integers(0, len(POSITIONS), n),
        "count": rng.integers(1, len(COUNTS) + 1, n),
    }


# --------------------------------------------------------------------------------------------
# Rendering (vectorised)
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _photos() -> np.ndarray:
    """The scikit-learn sample photos, 4× downsampled by block averaging: (P, H, W, 3) in [0, 1]."""
    from sklearn.datasets import load_sample_images

    out = []
    for img in load_sample_images().images:
        a = np.asarray(img, dtype=np.float32) / 255.0
        h, w = (a.shape[0] // 4) * 4, (a.shape[1] // 4) * 4
        out.append(a[:h, :w].reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3)))
    h = min(p.shape[0] for p in out)
    w = min(p.shape[1] for p in out)
    return np.stack([p[:h, :w] for p in out])


def _backgrounds(n: int, size: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """(n, 3, size, size) backgrounds: muted crops of real photos, plain grey, or noise."""
    if kind == "plain":
        return np.full((n, 3, size, size), 0.5, dtype=np.float32)
    if kind == "noise":
        return (0.5 + 0.08 * rng.standard_normal((n, 3, size, size))).astype(np.float32)
    photos = _photos()
    p, h, w, _ = photos.shape
    which = rng.integers(0, p, n)
    top = rng.integers(0, h - size + 1, n)
    left = rng.integers(0, w - size + 1, n)
    flip = rng.random(n) < 0.5
    windows = np.lib.stride_tricks.sliding_window_view(photos, (size, size), axis=(1, 2))
    crops = windows[which, top, left]  # (n, 3, size, size), one copy of each window
    crops[flip] = crops[flip, :, :, ::-1]
    # Mute the photo (lower contrast, pulled towards grey) so that objects stay visible.
    return (0.5 + _PHOTO_CONTRAST * (crops - 0.5)).astype(np.float32)


def _shape_distance(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised "distance" of (u, v) to the shape's centre: the shape is ``d <= 1``.

    ``u`` points right and ``v`` points up, both in units of the object's radius.
    """
    if shape == 0:  # circle
        return np.sqrt(u * u + v * v)
    if shape == 1:  # square (a little smaller so that its area matches the circle's)
        return np.maximum(np.abs(u), np.abs(v)) / 0.88
    if shape == 2:  # triangle pointing up, vertices (0, 1), (±0.866, -0.5), scaled up by 1.2
        u, v = u / 1.2, (v + 0.1) / 1.2
        return np.maximum(-2.0 * v, v + np.sqrt(3.0) * np.abs(u))
    if shape == 3:  # cross: two bars of half-width 0.36
        w = 0.36
        return np.minimum(np.maximum(np.abs(u), np.abs(v) / w), np.maximum(np.abs(u) / w, np.abs(v)))
    if shape == 4:  # five-pointed star, one point up
        r = np.sqrt(u * u + v * v)
        theta = np.arctan2(u, v)  # 0 = up
        sector = 2 * np.pi / 5
        a = np.abs(np.mod(theta + sector / 2, sector) - sector / 2) / (sector / 2)  # 0 at a point, 1 between
        boundary = 1.15 - 0.68 * a  # outer radius 1.15, inner 0.47
        return r / boundary
    raise ValueError(f"unknown shape index {shape}")


def _object_centres(scenes: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 2) object centres in pixels (x, y); unused slots (beyond ``count``) are NaN."""
    n = len(scenes["shape"])
    count = scenes["count"]
    slot = np.arange(3)[None, :]
    along = size * (slot + 0.5) / count[:, None]  # spread the objects along the half's long side
    across = np.full((n, 3), size / 4.0)
    pos = scenes["position"][:, None]
    # left/right halves: objects in a column; top/bottom halves: objects in a row.
    x = np.where(pos == 0, across, np.where(pos == 1, size - across, along))
    y = np.where(pos == 2, across, np.where(pos == 3, size - across, along))
    jitter = rng.uniform(-1.2, 1.2, (n, 3, 2))
    centres = np.stack([x, y], axis=-1) + jitter
    centres[slot.repeat(n, 0) >= count[:, None]] = np.nan
    return centres.astype(np.float32)


def render_scenes(
    scenes: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    size: int = 32,
    background: str = "photo",
    grayscale: bool = False,
) -> np.ndarray:
    """Draw scenes as ``(N, 3, size, size)`` float32 images in [0, 1].

    Objects are anti-aliased analytic masks (coverage ≈ ``clip(radius·(1 − d) + ½, 0, 1)``)
    composited over the background. With ``grayscale=True`` the camera loses the colour: the
    background is converted to grey and each object gets a random grey level (dark or bright,
    independent of its colour), so the image shows the shape but says nothing about the colour.
    """
    size = check_int("size", size, minimum=16)
    check_choice("background", background, ("photo", "plain", "noise"))
    n = len(scenes["shape"])
    img = _backgrounds(n, size, rng, background)
    if grayscale:
        img = np.repeat(img.mean(axis=1, keepdims=True), 3, axis=1)
    radius = np.where(scenes["size"] == 0, _RADIUS[0], _RADIUS[1]).astype(np.float32)
    radius = radius * rng.uniform(0.92, 1.08, n).astype(np.float32)
    centres = _object_centres(scenes, size, rng)
    if grayscale:
        dark = rng.random(n) < 0.5
        level = np.where(dark, rng.uniform(0.0, 0.2, n), rng.uniform(0.8, 1.0, n)).astype(np.float32)
        rgb = np.repeat(level[:, None], 3, axis=1)
    else:
        rgb = _RGB[scenes["colour"]] + rng.normal(0.0, 0.04, (n, 3)).astype(np.float32)
    rgb = np.clip(rgb, 0.0, 1.0)
    coords = np.arange(size, dtype=np.float32) + 0.5
    for shape in range(len(SHAPES)):
        idx = np.flatnonzero(scenes["shape"] == shape)
        if len(idx) == 0:
            continue
        r = radius[idx, None, None, None]
        cx = centres[idx, :, 0, None, None]
        cy = centres[idx, :, 1, None, None]
        u = (coords[None, None, None, :] - cx) / r
        v = (cy - coords[None, None, :, None]) / r
        d = _shape_distance(shape, u, v)
        cover = np.clip(r * (1.0 - d) + 0.5, 0.0, 1.0)
        cover = np.fmax.reduce(cover, axis=1)  # (k, size, size): union of the objects (NaN = no object)
        cover = cover[:, None]  # (k, 1, size, size)
        img[idx] = img[idx] * (1.0 - cover) + rgb[idx, :, None, None] * cover
    return img
