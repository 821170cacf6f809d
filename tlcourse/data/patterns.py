"""Fabric patterns written to disk as an ImageFolder: "your own images" for the practical page.

Four classes of textile-like patterns — ``stripes``, ``checks``, ``dots`` and ``plain`` (a solid
cloth with a weave-like noise) — in random colours, scales, angles and phases, each slightly lit
by a crop of the photograph ``grace_hopper.jpg`` that ships with matplotlib (a picture the rest
of the book does not use). Images are saved as JPEG files of random sizes in the
``root/<class>/<name>.jpg`` layout that ``torchvision.datasets.ImageFolder`` reads, so the page
can show the whole path from files on disk to a fine-tuned model.

The task is deliberately *unlike* the backbone's source (printed characters): textures, no
shapes, no shared classes.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from tlcourse.checks import check_int

__all__ = ["PATTERN_CLASSES", "pattern_image", "write_pattern_folder"]

PATTERN_CLASSES: tuple[str, ...] = ("checks", "dots", "plain", "stripes")


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0


def pattern_image(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size × size × 3`` uint8 image of class ``label`` (one of :data:`PATTERN_CLASSES`)."""
    if label not in PATTERN_CLASSES:
        raise ValueError(f"label must be one of {list(PATTERN_CLASSES)}, got {label!r}")
    check_int("size", size, minimum=8)
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) / size) - 0.5
    angle = rng.uniform(0, math.pi)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    period = rng.uniform(0.12, 0.3)
    phase_u, phase_v = rng.uniform(0, 1, size=2)
    if label == "stripes":
        mask = (np.mod(u / period + phase_u, 1.0) < 0.5).astype(np.float32)
    elif label == "checks":
        along, across = np.mod(u / period + phase_u, 1.0) < 0.5, np.mod(v / period + phase_v, 1.0) < 0.5
        mask = (along ^ across).astype(np.float32)
    elif label == "dots":
        du, dv = np.mod(u / period + phase_u, 1.0) - 0.5, np.mod(v / period + phase_v, 1.0) - 0.5
        mask = (du ** 2 + dv ** 2 < rng.uniform(0.05, 0.1)).astype(np.float32)
    else:  # plain cloth: a fine weave-like noise
        mask = np.clip(0.5 + 0.25 * rng.standard_normal((size, size)), 0, 1).astype(np.float32)
    back, fore = rng.uniform(0, 1, size=3), rng.uniform(0, 1, size=3)
    while np.abs(back - fore).max() < 0.4:
        fore = rng.uniform(0, 1, size=3)
    image = (1 - mask[..., None]) * back + mask[..., None] * fore
    photo = _photo()
    top, left = rng.integers(0, photo.shape[0] - size + 1), rng.integers(0, photo.shape[1] - size + 1)
    light = 0.6 + 0.4 * photo[top:top + size, left:left + size, None]  # shading from the photograph
    return np.clip(255 * image * light, 0, 255).astype(np.uint8)


def write_pattern_folder(root: str | os.PathLike, n_per_class: int, seed: int = 0,
                         sizes: tuple[int, int] = (40, 96)) -> Path:
    """Write ``n_per_class`` JPEG images per class under ``root/<class>/`` (random sizes in
    ``sizes``) and return ``root``: the layout ``torchvision.datasets.ImageFolder`` reads."""
    from PIL import Image

    check_int("n_per_class", n_per_class, minimum=1)
    check_int("seed", seed, minimum=0)
    if len(sizes) != 2 or not 8 <= sizes[0] <= sizes[1]:
        raise ValueError(f"sizes must be (low, high) with 8 <= low <= high, got {sizes!r}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    for label in PATTERN_CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            size = int(rng.integers(sizes[0], sizes[1] + 1))
            Image.fromarray(pattern_image(label, size, rng)).save(root / label / f"{label}_{i:04d}.jpg", quality=90)
    return root
