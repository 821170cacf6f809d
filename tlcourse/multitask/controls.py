"""Controls for multi-task experiments: separate extra *labels* from extra *images* (Section 5.6).

A multi-task model usually sees more images per step than its single-task baseline: the
auxiliary tasks bring their own. A gain (or a loss) can then come from the auxiliary labels or
merely from the auxiliary images (batch normalisation statistics, a different mix of inputs).
Two controls keep the images and remove what the labels say:

* :func:`unlabelled_loss` — the auxiliary images run through the shared encoder with the rest of
  the batch, but contribute no loss (only normalisation sees them);
* :func:`shuffled_labels` — the auxiliary task keeps its images, its head and its label
  frequencies, but the labels are permuted, so they carry no information about the images.

:func:`label_association` measures how much an auxiliary label is determined by another one
(e.g. how much "more ink than the median" depends on the digit class) before calling it a
nuisance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tlcourse.checks import check_int

__all__ = ["unlabelled_loss", "shuffled_labels", "label_association"]


def unlabelled_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A loss of exactly zero that keeps ``outputs`` in the graph: images without their labels.

    Pass it as ``loss_fns={"images": unlabelled_loss}`` to :func:`~tlcourse.multitask.fit_multitask`:
    the task's images are drawn and encoded with the other tasks' batches (so batch
    normalisation sees them) and nothing else is learned from them.
    """
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"outputs must be a Tensor, got {type(outputs).__name__}")
    return outputs.sum() * 0.0


def shuffled_labels(dataset: Any, seed: int = 0) -> Any:
    """The same images with their labels permuted (a seeded draw): labels that say nothing.

    Keeps the number of examples, the label frequencies and the images; breaks the link between
    an image and its label. ``dataset`` needs ``.images`` and ``.labels`` (an
    :class:`~tlcourse.data.ArrayDataset`); the result is a new dataset of the same type.
    """
    if not hasattr(dataset, "images") or not hasattr(dataset, "labels"):
        raise TypeError(f"dataset must have .images and .labels (an ArrayDataset), got {type(dataset).__name__}")
    check_int("seed", seed, minimum=0)
    if len(dataset.labels) == 0:
        raise ValueError("dataset is empty: expected at least one example to shuffle")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset.labels), generator=generator)
    return type(dataset)(dataset.images, dataset.labels[order], getattr(dataset, "classes", None))


def label_association(task_labels: Any, class_labels: Any) -> dict[str, Any]:
    """How much a task's labels depend on a class label.

    Returns ``rate`` (the share of each task label per class, a ``(classes, task labels)``
    array), ``nmi`` (normalised mutual information, 0 = independent, 1 = one determines the
    other; scikit-learn's ``normalized_mutual_info_score``), ``from_class`` (the accuracy of
    predicting the task label from the class alone, by the majority per class) and ``majority``
    (the accuracy of always predicting the most frequent task label, the level ``from_class``
    must beat for the class to tell anything).
    """
    from sklearn.metrics import normalized_mutual_info_score

    t = np.asarray(task_labels.cpu() if isinstance(task_labels, torch.Tensor) else task_labels)
    c = np.asarray(class_labels.cpu() if isinstance(class_labels, torch.Tensor) else class_labels)
    if t.ndim != 1 or c.ndim != 1 or len(t) != len(c):
        raise ValueError(f"task_labels and class_labels must be 1-D of the same length, "
                         f"got shapes {t.shape} and {c.shape}")
    if len(t) == 0:
        raise ValueError("task_labels is empty: expected at least one example")
    t_values, t_idx = np.unique(t, return_inverse=True)
    c_values, c_idx = np.unique(c, return_inverse=True)
    counts = np.zeros((len(c_values), len(t_values)))
    np.add.at(counts, (c_idx, t_idx), 1)
    return {
        "rate": counts / counts.sum(1, keepdims=True),
        "nmi": float(normalized_mutual_info_score(c, t)),
        "from_class": float(counts.max(1).sum() / len(t)),
        "majority": float(counts.sum(0).max() / len(t)),
    }
