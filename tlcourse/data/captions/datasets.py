"""Datasets of the caption data: image–caption splits and the two-modality fusion task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from tlcourse.checks import check_int
from tlcourse.data.captions.grammar import caption_scenes, fusion_note
from tlcourse.data.captions.scenes import (
    ATTRIBUTES,
    DEFAULT_HOLDOUT,
    _holdout_mask,
    combo_index,
    combo_names,
    render_scenes,
    sample_scenes,
)

__all__ = ["CaptionDataset", "CaptionSplit", "FusionDataset", "FusionSplit", "make_captions", "make_fusion_task",
           "reference_captions"]

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

    def subset(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> CaptionDataset:
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


def reference_captions(dataset: CaptionDataset, n: int = 5, seed: int = 0) -> list[list[str]]:
    """``n`` reference captions per image, as caption benchmarks have (COCO: 5 per image).

    The first is the dataset's own caption; the other ``n − 1`` are new sentences from the same
    grammar for the same scene (another template, other synonyms), drawn with ``seed``. Scoring
    a generated caption against several references (BLEU, CIDEr-D) rewards any phrasing the
    grammar allows, not one particular sentence.
    """
    if not isinstance(dataset, CaptionDataset):
        raise TypeError(f"dataset must be a CaptionDataset, got {type(dataset).__name__}")
    n = check_int("n", n, minimum=1)
    check_int("seed", seed, minimum=0)
    scenes = {k: v.numpy() for k, v in dataset.attributes.items()}
    rng = np.random.default_rng(seed)
    extra = [caption_scenes(scenes, rng) for _ in range(n - 1)]
    return [[dataset.captions[i], *(e[i] for e in extra)] for i in range(len(dataset))]


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
        parts.append(FusionDataset(images, fusion_note(scenes, rng), labels))
    return FusionSplit(*parts)
