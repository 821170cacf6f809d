"""Model selection for domain adaptation without target labels (book section "Choosing without target labels").

An adaptation method still has hyper-parameters (trade-offs, learning rates, when to stop) and
a practitioner must choose between methods. Choosing with the labels of the target test set
uses exactly what the problem says we do not have. The label-free criteria here score one
trained *candidate*; the candidate with the best score is selected:

* **IWCV** (importance-weighted cross-validation, Sugiyama et al., 2007): the target risk is
  ``E_t[ℓ] = E_s[w(x) ℓ(x)]`` with ``w = p_t / p_s``, so the mean of ``w_i ℓ_i`` over labelled
  *source validation* examples estimates it (book Eq. (6.14)).
* **DEV** (deep embedded validation, You et al., 2019): the same weighted losses
  ``L_i = w_i ℓ_i`` with a control variate — ``E[w] = 1`` is known, so
  ``R = mean(L) + η (mean(w) − 1)`` with ``η = −Cov(L, w) / Var(w)`` has a smaller variance
  (book Eq. (6.15)).
* The density ratio ``w`` of both comes from a **domain classifier on the candidate's
  features** (:func:`density_ratio`): ``w(x) = (n_s / n_t) · P(target | x) / P(source | x)``.
* **SND** (soft neighbourhood density, Saito et al., 2021) looks at the target only: with
  L2-normalised class-probability vectors ``p_i``, each target example's soft neighbourhood is
  ``softmax_j(p_i·p_j / τ)`` (``j ≠ i``, ``τ = 0.05``); SND is its mean entropy (higher is
  better: predictions that form dense, consistent clusters).
* **Prediction entropy** (lower is better), the simplest target-only signal; it rewards
  over-confidence and collapse, and is shown as a cautionary baseline.

The practical alternative is not label-free and is named as such: a **small labelled target
validation set** (:func:`labelled_target_validation`, e.g. 10 labelled images per class taken
from the target *training* images, never from the target test set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_int, check_positive

__all__ = ["CRITERIA", "density_ratio", "iwcv_risk", "dev_risk", "snd_score", "prediction_entropy",
           "labelled_target_validation", "outputs_of", "score_candidate", "select"]

#: criterion → (higher_is_better, uses target labels, what it is)
CRITERIA: dict[str, tuple[bool, bool, str]] = {
    "source_val": (True, False, "source validation accuracy"),
    "iwcv": (False, False, "IWCV risk (Sugiyama et al., 2007)"),
    "dev": (False, False, "DEV risk (You et al., 2019)"),
    "snd": (True, False, "soft neighbourhood density (Saito et al., 2021)"),
    "entropy": (False, False, "mean prediction entropy"),
    "target_val": (True, True, "accuracy on a small labelled target validation set"),
}


def _array(name: str, x: Any, ndim: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"{name} must have at least 2 rows, got {len(x)}")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def density_ratio(source_fit: Any, target_fit: Any, source_eval: Any, *, C: float = 1.0,
                  clip: float | None = None, seed: int = 0) -> np.ndarray:
    """``w(x) = p_t(x) / p_s(x)`` at the rows of ``source_eval``, from a domain classifier.

    A logistic regression (scikit-learn, standardised features) learns target (1) vs source (0)
    on ``source_fit`` and ``target_fit``; Bayes' rule turns its odds into the density ratio,
    ``w = (n_s / n_t) · P(t | x) / P(s | x)``. Fit it on other source rows than those you
    evaluate (e.g. source training features, evaluated on source validation features).
    ``clip`` caps the weights (none by default: a large weight is information, not noise).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs, xt = _array("source_fit", source_fit, 2), _array("target_fit", target_fit, 2)
    xe = _array("source_eval", source_eval, 2)
    if not xs.shape[1] == xt.shape[1] == xe.shape[1]:
        raise ValueError(f"source_fit, target_fit and source_eval must have the same number of columns, "
                         f"got {xs.shape[1]}, {xt.shape[1]} and {xe.shape[1]}")
    check_positive("C", C)
    if clip is not None:
        check_positive("clip", clip)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000, random_state=seed))
    clf.fit(np.concatenate([xs, xt]), np.r_[np.zeros(len(xs)), np.ones(len(xt))])
    log_odds = clf.decision_function(xe)  # log P(t|x) - log P(s|x)
    w = np.exp(np.clip(log_odds, -50, 50)) * (len(xs) / len(xt))
    return np.minimum(w, clip) if clip is not None else w


def _losses_weights(losses: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    ell, w = _array("losses", losses, 1), _array("weights", weights, 1)
    if len(ell) != len(w):
        raise ValueError(f"losses and weights must have the same length, got {len(ell)} and {len(w)}")
    if (w < 0).any():
        raise ValueError("weights must be >= 0 (density ratios)")
    return ell, w


def iwcv_risk(losses: Any, weights: Any) -> float:
    """IWCV estimate of the target risk: ``mean(w_i ℓ_i)`` over source validation examples (Eq. (6.14))."""
    ell, w = _losses_weights(losses, weights)
    return float(np.mean(w * ell))


def dev_risk(losses: Any, weights: Any) -> float:
    """DEV estimate of the target risk (You et al., 2019, Eq. (6.15)): IWCV with a control variate.

    ``L = w ℓ``; ``η = −Cov(L, w) / Var(w)``; ``R = mean(L) + η · mean(w) − η``. Since the
    true ``E_s[w] = 1``, the correction removes the part of IWCV's error explained by the
    sample's weights averaging above or below 1.
    """
    ell, w = _losses_weights(losses, weights)
    weighted = w * ell
    var = np.var(w, ddof=1)
    eta = 0.0 if var <= 0 else -np.cov(weighted, w, ddof=1)[0, 1] / var
    return float(weighted.mean() + eta * w.mean() - eta)


def _probabilities(name: str, probs: Any) -> np.ndarray:
    p = _array(name, probs, 2)
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError(f"{name} must hold class probabilities (rows >= 0 summing to 1): apply softmax to logits")
    return p


def snd_score(probs: Any, temperature: float = 0.05) -> float:
    """Soft neighbourhood density of target predictions (Saito et al., 2021); higher is better.

    ``probs``: ``(N, C)`` softmax outputs on unlabelled target images. Rows are L2-normalised,
    similarities to the other rows scaled by ``1/temperature`` and soft-maxed; the score is the
    mean entropy of those neighbourhood distributions.
    """
    check_positive("temperature", temperature)
    p = torch.as_tensor(_probabilities("probs", probs))
    p = F.normalize(p, dim=1)
    sim = p @ p.T / temperature
    sim.fill_diagonal_(-float("inf"))
    log_q = torch.log_softmax(sim, dim=1)
    entropy = -(log_q.exp() * log_q.nan_to_num(neginf=0.0)).sum(1)
    return float(entropy.mean())


def prediction_entropy(probs: Any) -> float:
    """Mean entropy ``−Σ_c p_c log p_c`` of target predictions (nats; lower = more confident)."""
    p = _probabilities("probs", probs)
    return float(-(p * np.log(np.clip(p, 1e-12, None))).sum(1).mean())


def labelled_target_validation(labels: Any, per_class: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, validation)`` of a small labelled target validation set, ``per_class`` per class.

    Not label-free: it is the practical alternative (label a few target *training* images).
    Pass the labels of the target **training** pool, never those of the target test set.
    """
    y = _array("labels", labels, 1).astype(np.int64)
    per_class = check_int("per_class", per_class, minimum=1)
    check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) <= per_class:
            raise ValueError(f"class {c} has {len(idx)} example(s): per_class={per_class} leaves none outside")
        val.append(rng.choice(idx, per_class, replace=False))
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(y)), val_idx), val_idx


@torch.no_grad()
def outputs_of(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)`` of ``model`` (eval mode) on ``images`` through its feature protocol."""
    from tlcourse.adapt.loop import feature_parts

    features, head = feature_parts(model)
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or len(images) == 0:
        raise ValueError("images must be a non-empty tensor of inputs")
    model.eval()
    dev = next(model.parameters()).device
    fs, ls = [], []
    for start in range(0, len(images), batch_size):
        f = features(images[start : start + batch_size].to(dev))
        fs.append(f.float().cpu())
        ls.append(head(f).float().cpu())
    return torch.cat(fs), torch.cat(ls)


def score_candidate(
    source_model: nn.Module,
    target_model: nn.Module,
    source_fit: torch.Tensor,
    source_val: tuple[torch.Tensor, torch.Tensor],
    target_images: torch.Tensor,
    target_val: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Every criterion of :data:`CRITERIA` for one trained candidate.

    ``source_model`` is the candidate as it sees source images, ``target_model`` as it sees
    target images (the same model, or its AdaBN copy). ``source_fit``: source images (not the
    validation ones) for the domain classifier; ``source_val``: labelled source validation
    ``(images, labels)``; ``target_images``: unlabelled target images; ``target_val``: the
    optional small labelled target set (its score is ``nan`` without it).
    """
    f_fit, _ = outputs_of(source_model, source_fit)
    f_val, logits_val = outputs_of(source_model, source_val[0])
    f_t, logits_t = outputs_of(target_model, target_images)
    losses = F.cross_entropy(logits_val, source_val[1], reduction="none")
    w = density_ratio(f_fit, f_t, f_val, seed=seed)
    probs = logits_t.softmax(1)
    scores = {"source_val": float((logits_val.argmax(1) == source_val[1]).float().mean()),
              "iwcv": iwcv_risk(losses, w), "dev": dev_risk(losses, w),
              "snd": snd_score(probs), "entropy": prediction_entropy(probs), "target_val": float("nan")}
    if target_val is not None:
        _, logits_tv = outputs_of(target_model, target_val[0])
        scores["target_val"] = float((logits_tv.argmax(1) == target_val[1]).float().mean())
    return scores


def select(scores: Mapping[str, Mapping[str, float]], criterion: str) -> str:
    """The candidate with the best ``criterion`` in ``scores`` (``candidate → {criterion: value}``).

    Ties go to the candidate listed first; NaN scores lose.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty dict: candidate -> {criterion: value}")
    higher = CRITERIA[criterion][0]
    best, best_key = None, -np.inf
    for name, row in scores.items():
        if criterion not in row:
            raise ValueError(f"candidate {name!r} has no {criterion!r} score")
        value = float(row[criterion])
        key = value if higher else -value
        if not np.isnan(value) and (best is None or key > best_key):
            best, best_key = name, key
    if best is None:
        raise ValueError(f"every candidate scored NaN on {criterion!r}")
    return best
