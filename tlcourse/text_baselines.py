"""Baselines for text classification that need no pretrained network, and the linear probe.

* :func:`fit_tfidf_logreg` — TF-IDF weighted words and word pairs (sub-linear term frequency)
  and an L2-regularised logistic regression (scikit-learn): the strong classical baseline of
  sentiment classification (Wang & Manning 2012 style).
* :func:`fit_probe` — logistic regression on frozen sentence embeddings (feature extraction).

Both take the inverse regularisation strength ``C``, which the book chooses on validation
from a declared grid (:func:`tlcourse.protocol.tune`), exactly as the networks' learning rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tlcourse.checks import check_positive

__all__ = ["fit_tfidf_logreg", "fit_probe", "C_GRID"]

#: The declared grid of ``C`` for both linear baselines.
C_GRID: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels must be 1-D with one entry per example ({n}), got shape {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("labels must contain at least two classes")
    return y


def fit_tfidf_logreg(texts: Sequence[str], labels: Any, C: float = 10.0) -> Any:
    """A fitted scikit-learn pipeline TF-IDF (1–2-grams) → logistic regression; ``.predict(texts)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError("texts must be a non-empty sequence of strings")
    check_positive("C", C)
    y = _labels(labels, len(texts))
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=C, max_iter=2000))
    return pipe.fit(list(texts), y)


def fit_probe(features: Any, labels: Any, C: float = 1.0) -> Any:
    """A fitted logistic regression on frozen features ``(N, D)``; ``.predict(features)``."""
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {X.shape}")
    check_positive("C", C)
    return LogisticRegression(C=C, max_iter=2000).fit(X, _labels(labels, len(X)))
