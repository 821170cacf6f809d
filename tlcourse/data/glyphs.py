"""Printed characters in many fonts, colours and textures: the course's "ImageNet".

The shipped pretrained backbone (``tlcourse.models.load_pretrained``) learns its features on
this source task: recognise 0–9, A–Z and the lower-case letters whose shape differs from their
capitals, rendered from the fonts that ship with matplotlib (DejaVu, STIX, Computer Modern),
then randomly rotated, sheared, scaled, thickened or thinned, coloured, and laid on smooth
random colour fields or noise. It shares *no* images with the target domains (handwritten MNIST,
UCI digits, photo-textured MNIST-M): what transfers is the visual vocabulary of strokes, edges
and shapes, and an invariance to colour and background, which is what an ImageNet backbone
brings to a small target task.

Rendering the glyph masks uses Pillow; the random augmentation is vectorised in torch.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from tlcourse.checks import check_int
from tlcourse.data.digits import ArrayDataset

__all__ = ["GLYPH_CLASSES", "BACKGROUND_CLASSES", "GLYPH_FONTS", "glyph_masks", "load_glyphs"]

_LOWER_DISTINCT = "abdefghijkmnpqrty"  # lower-case letters whose shape differs from the capital
GLYPH_CLASSES: list[str] = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" + _LOWER_DISTINCT)

#: Labels of the misleading ``task="background"``: which of R, G, B exceed one half.
BACKGROUND_CLASSES: list[str] = ["black", "blue", "green", "cyan", "red", "magenta", "yellow", "white"]

GLYPH_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf",
)


def _font_dir() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@lru_cache(maxsize=2)
def glyph_masks(box: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (font, character) rendered as a grey mask whose longer side fills ``box`` pixels.

    Returns ``masks`` ``(F·C, 1, 28, 28)`` in [0, 1] (centred like MNIST) and ``labels``.
    """
    from PIL import Image, ImageDraw, ImageFont

    masks, labels = [], []
    for font_name in GLYPH_FONTS:
        font = ImageFont.truetype(os.path.join(_font_dir(), font_name), 96)
        for label, char in enumerate(GLYPH_CLASSES):
            canvas = Image.new("L", (160, 160), 0)
            ImageDraw.Draw(canvas).text((30, 10), char, fill=255, font=font)
            bbox = canvas.getbbox()
            if bbox is None:
                continue
            glyph = canvas.crop(bbox)
            scale = box / max(glyph.size)
            size = (max(1, round(glyph.size[0] * scale)), max(1, round(glyph.size[1] * scale)))
            glyph = glyph.resize(size, Image.LANCZOS)
            frame = Image.new("L", (28, 28), 0)
            frame.paste(glyph, ((28 - size[0]) // 2, (28 - size[1]) // 2))
            masks.append(np.asarray(frame, dtype=np.float32) / 255.0)
            labels.append(label)
    return torch.from_numpy(np.stack(masks)).unsqueeze(1), torch.tensor(labels)


def _random_affine(masks: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = len(masks)
    angle = (torch.rand(n, generator=g) - 0.5) * math.radians(40)
    shear = (torch.rand(n, generator=g) - 0.5) * 0.6
    scale = 0.75 + 0.45 * torch.rand(n, generator=g)
    aspect = 0.8 + 0.4 * torch.rand(n, generator=g)
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.3
    cos, sin = torch.cos(angle), torch.sin(angle)
    # inverse map (output → input coordinates) for grid_sample
    a = torch.stack([cos / scale, (-sin + shear) / scale, shift[:, 0]], 1)
    b = torch.stack([sin / (scale * aspect), cos / (scale * aspect), shift[:, 1]], 1)
    theta = torch.stack([a, b], 1)
    grid = F.affine_grid(theta, list(masks.shape), align_corners=False)
    return F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_stroke(masks: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    choice = torch.randint(3, (len(masks), 1, 1, 1), generator=g)
    thicker = F.max_pool2d(masks, 3, 1, 1)
    thinner = -F.max_pool2d(-masks, 3, 1, 1)
    out = torch.where(choice == 1, thicker, masks)
    return torch.where(choice == 2, 0.5 * (masks + thinner), out)


def _random_backgrounds(n: int, g: torch.Generator) -> torch.Tensor:
    """A base colour plus a smooth random texture of random strength and a little noise."""
    base = torch.rand(n, 3, 1, 1, generator=g)
    grain = torch.randint(2, 6, (n,), generator=g)
    texture = torch.empty(n, 3, 28, 28)
    for size in grain.unique().tolist():
        rows = grain == size
        coarse = torch.rand(int(rows.sum()), 3, size, size, generator=g)
        texture[rows] = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=False)
    strength = 0.6 * torch.rand(n, 1, 1, 1, generator=g)
    noise = 0.15 * torch.rand(n, 1, 1, 1, generator=g) * (torch.rand(n, 3, 28, 28, generator=g) - 0.5)
    return (base + strength * (texture - 0.5) + noise).clamp(0, 1), base


def load_glyphs(n_per_class: int = 400, seed: int = 0, task: str = "character") -> ArrayDataset:
    """A seeded sample of ``n_per_class`` augmented printed characters per class (RGB, 28×28).

    A quarter of the images are plain light-on-dark grey glyphs, the rest are coloured glyphs
    on random colour fields; foreground and background colours are drawn far apart so the
    character stays visible.

    ``task="background"`` labels the same kind of images (all coloured) by their background
    colour (:data:`BACKGROUND_CLASSES`) instead of the character: a source task that needs no
    shape at all, used in chapter 1 to show negative transfer.
    """
    check_int("n_per_class", n_per_class, minimum=1)
    if task not in ("character", "background"):
        raise ValueError(f"task must be one of ['character', 'background'], got {task!r}")
    check_int("seed", seed, minimum=0)
    masks, labels = glyph_masks()
    g = torch.Generator().manual_seed(seed)
    picks = torch.cat([
        torch.nonzero(labels == c).flatten()[torch.randint(int((labels == c).sum()), (n_per_class,), generator=g)]
        for c in range(len(GLYPH_CLASSES))
    ])
    picks = picks[torch.randperm(len(picks), generator=g)]
    m = _random_stroke(_random_affine(masks[picks], g), g).clamp(0, 1)
    n = len(picks)
    background, base = _random_backgrounds(n, g)
    # a foreground colour at least 0.45 away from the base colour in every channel
    offset = 0.45 + 0.4 * torch.rand(n, 3, 1, 1, generator=g)
    foreground = torch.where(base > 0.5, base - offset, base + offset).clamp(0, 1)
    colour = (1 - m) * background + m * foreground
    grey = m.expand(-1, 3, -1, -1)
    plain = torch.rand(n, 1, 1, 1, generator=g) < 0.25
    if task == "background":
        bits = (base.flatten(1) > 0.5).long()
        labels = 4 * bits[:, 0] + 2 * bits[:, 1] + bits[:, 2]
        return ArrayDataset(colour.clamp(0, 1).contiguous(), labels, BACKGROUND_CLASSES)
    images = torch.where(plain, grey, colour).clamp(0, 1).contiguous()
    return ArrayDataset(images, labels[picks], GLYPH_CLASSES)
