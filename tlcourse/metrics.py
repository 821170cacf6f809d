"""Classification metrics (scikit-learn under the hood) and mean ± std reporting over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["accuracy", "macro_f1", "confusion_matrix", "per_class_report", "mean_std", "format_mean_std"]

ArrayLike = Any


def _labels(name: str, y: ArrayLike) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2:  # logits or probabilities → predicted class
        y = y.argmax(1)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices or 2-D scores, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    return y


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(t)} and {len(p)}")
    if len(t) == 0:
        raise ValueError("y_true is empty: expected at least one example")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of correct predictions. ``y_pred`` may be class indices or scores (argmax)."""
    t, p = _pair(y_true, y_pred)
    return float((t == p).mean())


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted mean of the per-class F1 scores (every class counts the same)."""
    from sklearn.metrics import f1_score

    t, p = _pair(y_true, y_pred)
    return float(f1_score(t, p, average="macro", zero_division=0))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of examples of class ``i`` predicted as ``j``."""
    from sklearn.metrics import confusion_matrix as sk_cm

    t, p = _pair(y_true, y_pred)
    n = num_classes if num_classes is not None else int(max(t.max(), p.max())) + 1
    return sk_cm(t, p, labels=list(range(n)))


def per_class_report(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Precision, recall, F1 and support per class plus macro/weighted averages (a dict)."""
    from sklearn.metrics import classification_report

    t, p = _pair(y_true, y_pred)
    labels = list(range(len(classes))) if classes is not None else None
    return classification_report(t, p, labels=labels, target_names=classes, output_dict=True, zero_division=0)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("values is empty: expected at least one number")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def format_mean_std(values: Sequence[float], digits: int = 3, percent: bool = False) -> str:
    """``"0.912 ± 0.013"`` (or ``"91.2 ± 1.3"`` with ``percent=True``)."""
    m, s = mean_std(values)
    if percent:
        return f"{100 * m:.{max(digits - 2, 0)}f} ± {100 * s:.{max(digits - 2, 0)}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"
