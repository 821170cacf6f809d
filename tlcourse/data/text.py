"""The course's review corpus and the pieces that feed text to a transformer.

The corpus (``corpora/reviews.jsonl``, data card ``corpora/DATA_CARD.md``) holds short English
reviews written for this book in two *domains* — ``"electronics"`` (gadgets) and
``"restaurants"`` (food and service) — each labelled with its overall sentiment
(0 = negative, 1 = positive) and assigned to a fixed, stratified train/test split.

* :func:`load_reviews` — a :class:`TextDataset` (one split) or a :class:`Split` (both).
* :func:`few_shot_texts` — ``k`` labelled reviews per class, as in chapter 4's learning curve.
* :func:`make_text_collate` — a ``collate_fn`` that tokenizes a batch of ``(text, label)`` pairs
  into ``({"input_ids", "attention_mask"}, labels)``, ready for :func:`tlcourse.train.fit`
  (the dict is passed as ``model(**inputs)``).
* :func:`make_text_loader` — a ``DataLoader`` that also groups texts of similar length into a
  batch (:class:`LengthGroupedBatchSampler`), so that little compute is spent on padding.

Tokenization is lazy (per batch, padded to the longest text of the batch), so a dataset is
just a list of strings and a tensor of labels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tlcourse.checks import check_choice, check_int, check_labels
from tlcourse.data.digits import Split

__all__ = [
    "REVIEW_DOMAINS",
    "SENTIMENT_CLASSES",
    "TextDataset",
    "load_reviews",
    "few_shot_texts",
    "make_text_collate",
    "make_text_loader",
    "LengthGroupedBatchSampler",
    "corpus_path",
]

#: The domains of the review corpus.
REVIEW_DOMAINS: tuple[str, ...] = ("electronics", "restaurants")
#: Class names, indexed by label.
SENTIMENT_CLASSES: list[str] = ["negative", "positive"]
_SPLITS = ("train", "test")


class TextDataset(Dataset):
    """Texts, integer labels and (optionally) the domain of each text, held in memory.

    ``dataset[i]`` is ``(text, label)`` with ``label`` a 0-d int64 tensor; batch it with
    :func:`make_text_collate`. ``domains`` is kept for cross-domain experiments.

    ``labels`` are class indices, or class *names* when ``classes`` lists them:
    ``TextDataset(["hi", "bye"], ["greet", "leave"], classes=["greet", "leave"])``.
    """

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[int] | torch.Tensor,
        classes: Sequence[str] | None = None,
        domains: Sequence[str] | None = None,
    ) -> None:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts must hold strings, texts[{i}] is {type(t).__name__}")
            if not t.strip():
                raise ValueError(f"texts[{i}] is empty: every text needs at least one non-space character")
        if not texts:
            raise ValueError("texts is empty: a TextDataset needs at least one (text, label) pair")
        labels = _label_indices(labels, classes)
        if labels.ndim == 0:
            raise ValueError("labels must be a 1-D sequence of class indices, got a scalar")
        check_labels("labels", labels, None if classes is None else len(classes))
        if len(texts) != len(labels):
            raise ValueError(f"texts and labels must have the same length, got {len(texts)} and {len(labels)}")
        if domains is not None:
            domains = list(domains)
            if len(domains) != len(texts):
                raise ValueError(f"domains and texts must have the same length, got {len(domains)} and {len(texts)}")
        self.texts: list[str] = texts
        self.labels: torch.Tensor = labels.long()
        n_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.classes: list[str] = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        self.domains: list[str] | None = domains

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor]:
        return self.texts[index], self.labels[index]

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> TextDataset:
        """A new dataset with the examples at ``indices`` (in that order)."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        domains = None if self.domains is None else [self.domains[i] for i in idx]
        return TextDataset([self.texts[i] for i in idx], self.labels[idx], self.classes, domains)

    def __add__(self, other: TextDataset) -> TextDataset:  # type: ignore[override]
        """Concatenate two datasets with the same classes (e.g. source + a few target labels)."""
        if not isinstance(other, TextDataset):
            raise TypeError(f"can only add a TextDataset, got {type(other).__name__}")
        if other.classes != self.classes:
            raise ValueError(f"both datasets must have the same classes, got {self.classes} and {other.classes}")
        domains = None
        if self.domains is not None and other.domains is not None:
            domains = self.domains + other.domains
        return TextDataset(self.texts + other.texts, torch.cat([self.labels, other.labels]), self.classes, domains)

    def __repr__(self) -> str:
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist() if len(self) else []
        doms = sorted(set(self.domains)) if self.domains else None
        return f"TextDataset(n={len(self)}, classes={self.classes}, per_class={counts}, domains={doms})"


def _label_indices(labels: Any, classes: Sequence[str] | None) -> torch.Tensor:
    """Labels as an int tensor; class names are mapped through ``classes`` (which must list them)."""
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence (one label per text), got a single string")
    if not isinstance(labels, torch.Tensor) and any(isinstance(y, str) for y in labels):
        if classes is None:
            raise TypeError(
                f"labels are class names (e.g. {next(y for y in labels if isinstance(y, str))!r}): pass "
                "classes=[...] to map them to indices, e.g. classes=sorted(set(labels))"
            )
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(y) for y in labels if y not in index})
        if unknown:
            raise ValueError(f"labels holds names that are not in classes={list(classes)}: {unknown}")
        return torch.tensor([index[y] for y in labels], dtype=torch.long)
    return torch.as_tensor(labels)


def corpus_path(name: str = "reviews") -> Path:
    """Path of a shipped corpus file (``corpora/<name>.jsonl``)."""
    check_choice("name", name, ("reviews",))
    return Path(str(resources.files("tlcourse.data") / "corpora" / f"{name}.jsonl"))


@lru_cache(maxsize=1)
def _read_reviews() -> tuple[dict[str, Any], ...]:
    path = corpus_path("reviews")
    if not path.is_file():
        raise FileNotFoundError(f"the review corpus {path} is missing from the installed package; reinstall tlcourse")
    with path.open(encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def load_reviews(domain: str | None = None, split: str | None = None) -> Split | TextDataset:
    """The course's review corpus (sentiment: 0 = negative, 1 = positive).

    Args:
        domain: ``"electronics"``, ``"restaurants"`` or ``None`` (both domains).
        split: ``"train"``, ``"test"`` or ``None`` (both, as a :class:`Split`).

    Returns:
        A :class:`TextDataset` (one split) or ``Split(train, test)``. The split is fixed in the
        file (75/25, stratified by domain and label), so every chapter and reader sees the same one.
    """
    if domain is not None:
        check_choice("domain", domain, REVIEW_DOMAINS + (None,))
    if split is None:
        return Split(load_reviews(domain, "train"), load_reviews(domain, "test"))  # type: ignore[arg-type]
    check_choice("split", split, _SPLITS)
    rows = [r for r in _read_reviews() if r["split"] == split and (domain is None or r["domain"] == domain)]
    return TextDataset(
        [r["text"] for r in rows],
        torch.tensor([r["label"] for r in rows], dtype=torch.long),
        SENTIMENT_CLASSES,
        [r["domain"] for r in rows],
    )


def few_shot_texts(dataset: TextDataset, k: int, seed: int = 0) -> TextDataset:
    """``k`` labelled examples per class drawn (seeded, without replacement) from ``dataset``."""
    if not isinstance(dataset, TextDataset):
        raise TypeError(f"dataset must be a TextDataset, got {type(dataset).__name__}")
    check_int("k", k, minimum=1)
    check_int("seed", seed, minimum=0)
    if len(dataset) == 0:
        raise ValueError("dataset is empty: expected at least one example")
    labels = dataset.labels.numpy()
    counts = np.bincount(labels, minlength=dataset.num_classes)
    present = counts[counts > 0]
    if k > present.min():
        raise ValueError(f"k must be <= the smallest class size ({present.min()}), got k={k}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in np.flatnonzero(counts)]
    return dataset.subset(rng.permutation(np.concatenate(chosen)))


def make_text_collate(
    tokenizer: Callable[..., Any], max_length: int = 64
) -> Callable[[list[tuple[str, torch.Tensor]]], tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """A ``collate_fn`` that tokenizes a batch of ``(text, label)`` pairs.

    Each batch is padded to its longest text (at most ``max_length`` tokens; longer texts are
    truncated) and returned as ``({"input_ids", "attention_mask"}, labels)``, which
    :func:`tlcourse.train.fit` passes to the model as ``model(**inputs)``.
    """
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a callable Hugging Face tokenizer, got {type(tokenizer).__name__}")
    check_int("max_length", max_length, minimum=2)

    def collate(batch: list[tuple[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if not batch:
            raise ValueError("batch is empty: expected at least one (text, label) pair")
        texts = [text for text, _ in batch]
        labels = torch.stack([torch.as_tensor(label, dtype=torch.long) for _, label in batch])
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return inputs, labels

    return collate


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices whose texts have similar lengths, in a new random order every epoch.

    A transformer's cost grows with the *padded* batch length, so batching a 5-token review
    with a 60-token one wastes most of the work. Each epoch the examples are sorted by their
    length times a random factor in ``[1 - jitter, 1 + jitter]`` (so batches still differ from
    epoch to epoch), cut into batches, and the batches are shuffled. With ``shuffle=False`` the
    order is by exact length (the fastest way to evaluate). The idea is the ``group_by_length``
    option of Hugging Face's ``Trainer``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 jitter: float = 0.3) -> None:
        check_int("batch_size", batch_size, minimum=1)
        check_int("seed", seed, minimum=0)
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        if len(lengths) == 0:
            raise ValueError("lengths is empty: expected at least one example")
        self.lengths = np.asarray(lengths, dtype=float)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.jitter = jitter
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):  # type: ignore[override]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            self.epoch += 1
            noise = rng.uniform(1 - self.jitter, 1 + self.jitter, size=len(self.lengths))
            order = np.argsort(self.lengths * noise, kind="stable")
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches


def make_text_loader(
    dataset: TextDataset,
    tokenizer: Callable[..., Any],
    *,
    batch_size: int = 16,
    max_length: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    group_by_length: bool = True,
) -> DataLoader:
    """A ``DataLoader`` of tokenized batches ``({"input_ids", "attention_mask"}, labels)``.

    With ``group_by_length`` (default) texts of similar length share a batch
    (:class:`LengthGroupedBatchSampler`): same examples, far less padding, several times faster
    on a CPU for short reviews. Pass the loader to :func:`tlcourse.train.fit` /
    :func:`~tlcourse.train.evaluate` in place of the dataset.
    """
    if not isinstance(dataset, TextDataset):
        raise TypeError(f"dataset must be a TextDataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: expected at least one example")
    collate = make_text_collate(tokenizer, max_length)
    check_int("batch_size", batch_size, minimum=1)
    if not group_by_length:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)
    token_ids = tokenizer(dataset.texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = [min(len(ids), max_length) for ids in token_ids]
    sampler = LengthGroupedBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
