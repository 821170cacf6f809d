"""Procedural image–caption data for chapter 7 (multimodal learning).

Every example is a small colour image of one to three identical objects and a sentence that
describes it. Five attributes define a scene:

=========  ===================================================
shape      circle, square, triangle, cross, star
colour     red, green, blue, yellow, purple
size       small, large
position   left, right, top, bottom (the half of the image the objects sit in)
count      one, two, three
=========  ===================================================

Images are drawn with anti-aliased analytic masks on crops of real photographs shipped with
scikit-learn (:func:`sklearn.datasets.load_sample_images`), entirely vectorised: thousands of
images take a fraction of a second. Captions come from a small grammar with several sentence
templates and synonyms ("two little scarlet discs on the left", "at the top there is one big
green box"), so that a text model has to read words, not match strings.

Compositional generalisation is tested by **holding out attribute combinations**: by default
five (shape, colour) pairs, one per shape and one per colour (e.g. *green circle*), never occur
in the training split, while every shape and every colour does. The test split mixes held-out
("novel") and seen combinations; ``dataset.novel`` marks the former.

Two more word lists are kept apart from the training grammar: :data:`UNSEEN_SYNONYMS`
("crimson", "disk", ...) and :data:`UNSEEN_TEMPLATES`, used only to phrase test prompts in ways
the training captions never did (chapter 7, locked-text tuning with a pretrained language model).

:func:`make_fusion_task` builds a task where **each modality alone is ambiguous**: the image is
seen through a grayscale camera (the colour is lost, the shape is visible) and the text is a
witness's note that names the colour but never the shape; the label is the (colour, shape) pair.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tlcourse.checks import check_choice, check_int

__all__ = [
    "SHAPES",
    "COLOURS",
    "SIZES",
    "POSITIONS",
    "COUNTS",
    "ATTRIBUTES",
    "DEFAULT_HOLDOUT",
    "SYNONYMS",
    "UNSEEN_SYNONYMS",
    "UNSEEN_TEMPLATES",
    "CaptionDataset",
    "CaptionSplit",
    "FusionDataset",
    "FusionSplit",
    "sample_scenes",
    "render_scenes",
    "caption_scenes",
    "make_captions",
    "make_fusion_task",
    "combo_index",
    "combo_names",
    "class_prompts",
    "zero_shot_prompts",
    "parse_caption",
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

#: Words of the training grammar, per attribute value (first entry = canonical word).
SYNONYMS: dict[str, dict] = {
    "shape": {
        "circle": ["circle", "disc"],
        "square": ["square", "box"],
        "triangle": ["triangle"],
        "cross": ["cross"],
        "star": ["star"],
    },
    "colour": {
        "red": ["red", "scarlet"],
        "green": ["green"],
        "blue": ["blue"],
        "yellow": ["yellow"],
        "purple": ["purple", "violet"],
    },
    "size": {"small": ["small", "little", "tiny"], "large": ["large", "big"]},
    "position": {
        "left": ["on the left", "at the left", "in the left half"],
        "right": ["on the right", "at the right", "in the right half"],
        "top": ["at the top", "near the top", "in the upper half"],
        "bottom": ["at the bottom", "near the bottom", "in the lower half"],
    },
    "count": {1: ["a", "one", "a single"], 2: ["two", "a pair of"], 3: ["three"]},
}

#: Words that never occur in training captions (for prompts phrased in an unseen way).
UNSEEN_SYNONYMS: dict[str, dict] = {
    "shape": {
        "circle": ["disk", "ring"],
        "square": ["block", "tile"],
        "triangle": ["wedge"],
        "cross": ["plus", "plus sign"],
        "star": ["asterisk"],
    },
    "colour": {
        "red": ["crimson"],
        "green": ["lime"],
        "blue": ["azure"],
        "yellow": ["golden"],
        "purple": ["lilac", "lavender"],
    },
}

#: Training sentence templates. Slots: {count} {size} {colour} {shape} {position} {be}.
_TEMPLATES: tuple[str, ...] = (
    "{count} {size} {colour} {shape} {position}",
    "{count} {colour} {shape} {position}",
    "{count} {size} {colour} {shape}",
    "there {be} {count} {size} {colour} {shape} {position}",
    "{position} there {be} {count} {colour} {shape}",
    "{position} {be} {count} {size} {colour} {shape}",
    "a picture of {count} {size} {colour} {shape} {position}",
    "{count} {shape} in {colour} {position}",
)

#: Prompt templates that never occur in training captions. Slots: {a} {colour} {shape}.
UNSEEN_TEMPLATES: tuple[str, ...] = (
    "i can see {a} {colour} {shape} here",
    "this image contains {a} {colour} {shape}",
    "look at {a} {colour} {shape}",
)

_PLURAL_EXCEPTIONS = {"box": "boxes", "cross": "crosses", "plus sign": "plus signs", "plus": "pluses"}


def _plural(noun: str) -> str:
    return _PLURAL_EXCEPTIONS.get(noun, noun + "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# --------------------------------------------------------------------------------------------
# Scenes: integer attribute arrays
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def caption_scenes(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """One caption per scene from the training grammar (random template and synonyms)."""
    captions = []
    n = len(scenes["shape"])
    template_ids = rng.integers(0, len(_TEMPLATES), n)
    for i in range(n):
        count = int(scenes["count"][i])
        shape = _pick(rng, SYNONYMS["shape"][SHAPES[scenes["shape"][i]]])
        text = _TEMPLATES[template_ids[i]].format(
            count=_pick(rng, SYNONYMS["count"][count]),
            size=_pick(rng, SYNONYMS["size"][SIZES[scenes["size"][i]]]),
            colour=_pick(rng, SYNONYMS["colour"][COLOURS[scenes["colour"][i]]]),
            shape=shape if count == 1 else _plural(shape),
            position=_pick(rng, SYNONYMS["position"][POSITIONS[scenes["position"][i]]]),
            be="is" if count == 1 else "are",
        )
        captions.append(text)
    return captions


def class_prompts(phrasing: str = "train", template: str | None = None, synonym: int = 0) -> list[str]:
    """One text prompt per (shape, colour) class, in :func:`combo_index` order.

    ``phrasing="train"`` uses the canonical training words ("a red circle");
    ``phrasing="unseen"`` uses :data:`UNSEEN_SYNONYMS` and :data:`UNSEEN_TEMPLATES` (first
    template unless ``template`` is given): sentences and words that no training caption contains
    ("i can see a crimson disk here"). ``synonym`` picks the i-th word of each synonym list
    (cycling through shorter lists).
    """
    check_choice("phrasing", phrasing, ("train", "unseen"))
    synonym = check_int("synonym", synonym, minimum=0)
    if template is None:
        template = "{a} {colour} {shape}" if phrasing == "train" else UNSEEN_TEMPLATES[0]
    if not isinstance(template, str) or "{colour}" not in template or "{shape}" not in template:
        raise ValueError("template must be a str with {colour} and {shape} slots (and optionally {a})")
    words = SYNONYMS if phrasing == "train" else UNSEEN_SYNONYMS
    prompts = []
    for s in SHAPES:
        for c in COLOURS:
            colours, shapes = words["colour"][c], words["shape"][s]
            colour = colours[synonym % len(colours)]
            prompts.append(template.format(a=_article(colour), colour=colour, shape=shapes[synonym % len(shapes)]))
    return prompts


def zero_shot_prompts(target: str = "combo", phrasing: str = "train") -> list[list[str]]:
    """Prompts for zero-shot classification: one *list* of prompts per class (to be averaged).

    ``target``: ``"combo"`` (25 (shape, colour) classes, :func:`combo_index` order), ``"colour"``
    or ``"shape"`` (5 classes each). ``phrasing="train"`` uses the canonical training words in
    the sentence "a red circle"; ``phrasing="unseen"`` uses :data:`UNSEEN_TEMPLATES` and, for the
    target attribute(s), :data:`UNSEEN_SYNONYMS` (two variants each), so that no prompt sentence
    and no target word ever occurred in a training caption. For ``"colour"`` the prompts of a
    class run over all five shapes (named with training words), and vice versa for ``"shape"``.
    """
    check_choice("target", target, ("combo", "colour", "shape"))
    check_choice("phrasing", phrasing, ("train", "unseen"))
    unseen = phrasing == "unseen"

    def words(attr: str, value: str, k: int) -> str:
        new_word = unseen and target in (attr, "combo")
        options = (UNSEEN_SYNONYMS if new_word else SYNONYMS)[attr][value]
        return options[k % len(options)]

    def sentence(colour: str, shape: str, k: int) -> str:
        template = UNSEEN_TEMPLATES[k % len(UNSEEN_TEMPLATES)] if unseen else "{a} {colour} {shape}"
        return template.format(a=_article(colour), colour=colour, shape=shape)

    variants = (0, 1) if unseen else (0,)
    if target == "combo":
        return [
            [sentence(words("colour", c, k), words("shape", s, k), k) for k in variants]
            for s in SHAPES
            for c in COLOURS
        ]
    if target == "colour":
        return [
            [
                sentence(words("colour", c, k), SYNONYMS["shape"][s][0], i + k)
                for k in variants
                for i, s in enumerate(SHAPES)
            ]
            for c in COLOURS
        ]
    return [
        [sentence(COLOURS[i], words("shape", s, k), i + k) for k in variants for i, _ in enumerate(COLOURS)]
        for s in SHAPES
    ]


def _phrase_table() -> dict[str, dict[str, object]]:
    table: dict[str, dict[str, object]] = {}
    for attr in ("shape", "colour", "size", "position"):
        table[attr] = {}
        for source in (SYNONYMS, UNSEEN_SYNONYMS):
            for value, words in source.get(attr, {}).items():
                for w in words:
                    table[attr][w] = value
                    if attr == "shape":
                        table[attr][_plural(w)] = value
    table["count"] = {"one": 1, "a single": 1, "two": 2, "a pair of": 2, "three": 3}
    return table


_PHRASES = _phrase_table()


def parse_caption(text: str) -> dict[str, object | None]:
    """Read the attributes a caption names: ``{"shape": "circle", "colour": "red", ...}``.

    Synonyms (training and unseen) map to canonical values; an attribute the caption does not
    mention is ``None``; when a caption names two different values of one attribute, the first
    one (leftmost) wins. A count is a number word, or an article ("a", "an") right before the
    noun phrase ("a picture of two discs" counts two). Used to score generated captions (attribute accuracy).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    padded = " " + re.sub(r"\s+", " ", text.lower()).strip() + " "
    out: dict[str, object | None] = {}
    for attr, phrases in _PHRASES.items():
        best: tuple[int, int, object] | None = None  # (position, -length, value)
        for phrase, value in phrases.items():
            at = padded.find(" " + phrase + " ")
            if at >= 0 and (best is None or (at, -len(phrase)) < best[:2]):
                best = (at, -len(phrase), value)
        out[attr] = None if best is None else best[2]
    if out["count"] is None and out["shape"] is not None:
        # "a little red circle": an article right before the noun phrase means one object.
        noun_phrase = r" an? (?:(?:%s) )*(?:%s) " % (
            "|".join(map(re.escape, list(_PHRASES["size"]) + list(_PHRASES["colour"]))),
            "|".join(map(re.escape, _PHRASES["shape"])),
        )
        if re.search(noun_phrase, padded):
            out["count"] = 1
    return out


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


class CaptionDataset(Dataset):
    """Images with captions and attribute labels, held in memory.

    Attributes:
        images: ``(N, 3, H, W)`` float tensor in [0, 1].
        captions: list of ``N`` strings.
        attributes: dict ``name -> (N,)`` int64 tensor (``count`` holds 1..3, the others indices).
        novel: ``(N,)`` bool tensor, True where the (shape, colour) pair was held out of training.
        labels: ``(N,)`` int64 (shape, colour) class index, see :func:`combo_index`.

    ``dataset[i]`` is ``(image, caption)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        captions: list[str],
        attributes: dict[str, torch.Tensor],
        novel: torch.Tensor,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError("images must be a (N, C, H, W) tensor")
        n = len(images)
        if len(captions) != n or len(novel) != n or any(len(a) != n for a in attributes.values()):
            raise ValueError("images, captions, attributes and novel must have the same length")
        self.images = images
        self.captions = list(captions)
        self.attributes = attributes
        self.novel = novel

    @property
    def labels(self) -> torch.Tensor:
        return combo_index(self.attributes["shape"], self.attributes["colour"])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.images[index], self.captions[index]

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> "CaptionDataset":
        """The examples at ``index`` (int indices or a boolean mask)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        ids = index.tolist()
        return CaptionDataset(
            self.images[index],
            [self.captions[i] for i in ids],
            {k: v[index] for k, v in self.attributes.items()},
            self.novel[index],
        )

    def __repr__(self) -> str:
        size = "x".join(map(str, self.images.shape[1:]))
        return f"CaptionDataset(n={len(self)}, image={size}, novel={int(self.novel.sum())})"


class CaptionSplit(NamedTuple):
    train: CaptionDataset
    test: CaptionDataset


def _build(
    scenes: dict[str, np.ndarray], rng: np.random.Generator, holdout_mask: np.ndarray, **render: object
) -> CaptionDataset:
    images = torch.from_numpy(render_scenes(scenes, rng, **render))
    captions = caption_scenes(scenes, rng)
    attributes = {k: torch.from_numpy(scenes[k].astype(np.int64)) for k in ATTRIBUTES}
    novel = torch.from_numpy(holdout_mask[scenes["shape"], scenes["colour"]])
    return CaptionDataset(images, captions, attributes, novel)


def make_captions(
    n_train: int = 3000,
    n_test: int = 1000,
    *,
    seed: int = 0,
    holdout: Sequence[tuple[str, str]] = DEFAULT_HOLDOUT,
    novel_fraction: float = 0.5,
    image_size: int = 32,
    background: str = "photo",
) -> CaptionSplit:
    """Generate a seeded image–caption split with held-out (shape, colour) combinations.

    The training split contains only the allowed combinations (uniformly); in the test split a
    fraction ``novel_fraction`` of the examples shows held-out combinations (``test.novel``), the
    rest seen ones. Same arguments, same data, on every machine.
    """
    n_train = check_int("n_train", n_train, minimum=1)
    n_test = check_int("n_test", n_test, minimum=0)
    check_int("seed", seed, minimum=0)
    if not isinstance(novel_fraction, (int, float)) or not 0.0 <= novel_fraction <= 1.0:
        raise ValueError(f"novel_fraction must be in [0, 1], got {novel_fraction!r}")
    mask = _holdout_mask(holdout)
    if novel_fraction > 0 and not mask.any():
        raise ValueError("novel_fraction > 0 needs at least one held-out combination in holdout")
    rng = np.random.default_rng(seed)
    train = _build(sample_scenes(n_train, rng, ~mask), rng, mask, size=image_size, background=background)
    n_novel = int(round(novel_fraction * n_test))
    parts = [sample_scenes(n_test - n_novel, rng, ~mask)]
    if n_novel:
        parts.append(sample_scenes(n_novel, rng, mask))
    scenes = {k: np.concatenate([p[k] for p in parts]) for k in ATTRIBUTES}
    order = rng.permutation(n_test)
    scenes = {k: v[order] for k, v in scenes.items()}
    test = _build(scenes, rng, mask, size=image_size, background=background)
    return CaptionSplit(train, test)


# --------------------------------------------------------------------------------------------
# A task that needs both modalities
# --------------------------------------------------------------------------------------------

_FUSION_TEMPLATES: tuple[str, ...] = (
    "it was {colour}",
    "something {colour} {position}",
    "{count} {size} {colour} {thing}",
    "i saw {count} {colour} {thing} {position}",
    "the {thing_} looked {colour} to me",
    "{colour} and {size}",
)


class FusionDataset(Dataset):
    """Paired (grayscale image, colour-only text) examples with a (shape, colour) label.

    ``dataset[i]`` is ``((image, text), label)``; ``images`` ``(N, 3, H, W)``, ``texts`` a list of
    strings, ``labels`` ``(N,)`` int64 (:func:`combo_index`), ``classes`` the 25 class names.
    """

    def __init__(self, images: torch.Tensor, texts: list[str], labels: torch.Tensor) -> None:
        if len(images) != len(texts) or len(images) != len(labels):
            raise ValueError("images, texts and labels must have the same length")
        self.images = images
        self.texts = list(texts)
        self.labels = labels
        self.classes = combo_names()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, str], torch.Tensor]:
        return (self.images[index], self.texts[index]), self.labels[index]

    def __repr__(self) -> str:
        return f"FusionDataset(n={len(self)}, classes={len(self.classes)})"


class FusionSplit(NamedTuple):
    train: FusionDataset
    val: FusionDataset
    test: FusionDataset


def _fusion_texts(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    texts = []
    template_ids = rng.integers(0, len(_FUSION_TEMPLATES), len(scenes["shape"]))
    for i, t in enumerate(template_ids):
        count = int(scenes["count"][i])
        texts.append(
            _FUSION_TEMPLATES[t].format(
                colour=_pick(rng, SYNONYMS["colour"][COLOURS[scenes["colour"][i]]]),
                size=_pick(rng, SYNONYMS["size"][SIZES[scenes["size"][i]]]),
                position=_pick(rng, SYNONYMS["position"][POSITIONS[scenes["position"][i]]]),
                count=_pick(rng, SYNONYMS["count"][count]),
                thing="thing" if count == 1 else "things",
                thing_="thing" if count == 1 else "things",
            )
        )
    return texts


def make_fusion_task(
    n_train: int = 2000,
    n_val: int = 500,
    n_test: int = 1000,
    *,
    seed: int = 0,
    image_size: int = 32,
) -> FusionSplit:
    """A 25-class task that needs both modalities: the label is the (shape, colour) pair.

    The image comes from a grayscale camera (shape visible, colour lost: object grey levels are
    random and independent of the colour) and the text is a witness's note that names the colour,
    sometimes the size, position or count, but never the shape. An ideal image-only model is right
    at most 1/5 of the time, an ideal text-only model too; together they can be always right.
    """
    sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    for name, value in sizes.items():
        check_int(name, value, minimum=1)
    check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    parts = []
    for n in sizes.values():
        scenes = sample_scenes(n, rng)
        images = torch.from_numpy(render_scenes(scenes, rng, size=image_size, grayscale=True))
        labels = torch.from_numpy(combo_index(scenes["shape"], scenes["colour"]).astype(np.int64))
        parts.append(FusionDataset(images, _fusion_texts(scenes, rng), labels))
    return FusionSplit(*parts)
