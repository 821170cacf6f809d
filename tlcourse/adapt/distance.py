"""Proxy A-distance: how well can a classifier tell the two domains apart?

Ben-David et al. (2007, 2010) bound the target error of a classifier by its source error plus a
divergence between the domains' feature distributions. That divergence can be estimated by
training a domain classifier (source vs target) and measuring its held-out error ``ε``
(book Eq. (6.2)):

    d_A = 2 (1 − 2ε).

``d_A ≈ 0`` when the classifier can do no better than chance (ε ≈ 0.5: indistinguishable
features) and ``d_A → 2`` when it separates the domains perfectly. Ganin et al. (2016) use it
to show that DANN features are harder to tell apart than source-only features. It is a proxy:
the estimate depends on the classifier family (here a linear one, scikit-learn's logistic
regression on standardised features), and can dip below 0 by chance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tlcourse.checks import check_int, check_positive

__all__ = ["proxy_a_distance", "domain_classifier_error", "MIN_HELD_OUT"]

#: Fewest rows per domain in the training and the held-out half of the domain classifier.
MIN_HELD_OUT = 5


def _as_array(name: str, x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"{name} must have at least 2 rows, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.astype(np.float64, copy=False)


def domain_classifier_error(
    source_features: Any, target_features: Any, test_size: float = 0.5, seed: int = 0, C: float = 1.0
) -> float:
    """Held-out error ``ε`` of a logistic-regression domain classifier (source vs target).

    The two domains are subsampled to the same size (so chance is exactly 0.5), split
    (stratified by domain) into train and test halves, standardised with the training
    statistics, and classified.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs = _as_array("source_features", source_features)
    xt = _as_array("target_features", target_features)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(
            f"source_features and target_features must have the same width, got {xs.shape[1]} and {xt.shape[1]}"
        )
    if not isinstance(test_size, float) or not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a float in (0, 1), got {test_size!r}")
    check_int("seed", seed, minimum=0)
    check_positive("C", C)
    n = min(len(xs), len(xt))
    if round(n * test_size) < MIN_HELD_OUT or n - round(n * test_size) < MIN_HELD_OUT:
        raise ValueError(
            f"source_features and target_features need enough rows for a held-out error: at least {MIN_HELD_OUT} "
            f"per domain in each half (test_size={test_size}), got {len(xs)} and {len(xt)} rows; with so few the "
            "error can only take a handful of values and the A-distance is noise (it can even be negative)"
        )
    rng = np.random.default_rng(seed)
    xs = xs[rng.permutation(len(xs))[:n]]
    xt = xt[rng.permutation(len(xt))[:n]]
    x = np.concatenate([xs, xt])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    clf.fit(x_tr, y_tr)
    return float(1.0 - clf.score(x_te, y_te))


def proxy_a_distance(
    source_features: Any, target_features: Any, test_size: float = 0.5, seed: int = 0, C: float = 1.0
) -> float:
    """Proxy A-distance ``2 (1 − 2ε)`` from :func:`domain_classifier_error` (Ben-David et al., 2010)."""
    eps = domain_classifier_error(source_features, target_features, test_size, seed, C)
    return 2.0 * (1.0 - 2.0 * eps)
