"""Calibration and honest uncertainty of a classifier's scores (chapter 8).

A model is *calibrated* when its confidence matches its accuracy: among the predictions made
with confidence 0.8, about 80 % are right. Modern networks, and fine-tuned ones in particular,
tend to be over-confident (Guo et al. 2017, *On Calibration of Modern Neural Networks*).

- :func:`expected_calibration_error` — ECE with equal-width confidence bins
  (Naeini et al. 2015; Guo et al. 2017, Eq. (3)), book Eq. (8.2).
- :func:`reliability_diagram` / :func:`plot_reliability_diagram` — accuracy vs confidence per bin.
- :class:`TemperatureScaler` / :func:`fit_temperature` — temperature scaling (Guo et al. 2017):
  one scalar :math:`T` fitted on a *validation* split by minimising the NLL, book Eq. (8.3).
  Dividing logits by :math:`T` changes no prediction, only the confidences.
- :func:`bootstrap_ci` — percentile bootstrap confidence interval of the accuracy (or of any
  per-example statistic's mean) on a finite test set.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import (
    check_choice,
    check_finite,
    check_int,
    check_labels,
    check_positive,
    check_probability,
    check_tensor,
)

__all__ = [
    "expected_calibration_error",
    "ReliabilityDiagram",
    "reliability_diagram",
    "plot_reliability_diagram",
    "TemperatureScaler",
    "fit_temperature",
    "negative_log_likelihood",
    "bootstrap_ci",
]


def _check_probs_labels(probs: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("probs", probs, ndim=2, dtype="float")
    check_finite("probs", probs)
    if len(probs) == 0:
        raise ValueError("probs is empty: expected at least one example")
    if probs.min() < 0 or probs.max() > 1 or not torch.allclose(
        probs.sum(1), torch.ones(len(probs), dtype=probs.dtype, device=probs.device), atol=1e-3
    ):
        raise ValueError(
            "probs must hold probabilities (each row in [0, 1] summing to 1); "
            "if you have logits, pass logits.softmax(dim=1)"
        )
    check_labels("labels", labels, num_classes=probs.shape[1])
    if len(labels) != len(probs):
        raise ValueError(f"probs and labels must have the same length, got {len(probs)} and {len(labels)}")
    return probs.detach().double().cpu(), labels.detach().cpu()


class ReliabilityDiagram(NamedTuple):
    """Per-bin statistics of a reliability diagram (bins with no example have NaN means)."""

    bin_edges: np.ndarray  #: ``(n_bins + 1,)`` edges, ``0 = e_0 < e_1 < ... < e_M = 1``
    confidence: np.ndarray  #: ``(n_bins,)`` mean confidence in each bin
    accuracy: np.ndarray  #: ``(n_bins,)`` accuracy in each bin
    counts: np.ndarray  #: ``(n_bins,)`` number of examples in each bin
    ece: float  #: expected calibration error, Eq. (8.2)


def reliability_diagram(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> ReliabilityDiagram:
    r"""Bin predictions by confidence and compare each bin's accuracy with its mean confidence.

    The confidence of a prediction is its top probability :math:`\hat p_i = \max_k p_{ik}`.
    Bin :math:`B_m` holds the predictions with :math:`\hat p_i \in ((m-1)/M, m/M]` (the first bin
    also takes :math:`\hat p_i = 0`). Guo et al. (2017) use :math:`M = 15`.

    Args:
        probs: ``(N, K)`` predicted probabilities (``logits.softmax(1)``).
        labels: ``(N,)`` true class indices.
        n_bins: number :math:`M` of equal-width bins on ``[0, 1]``.
    """
    probs, labels = _check_probs_labels(probs, labels)
    n_bins = check_int("n_bins", n_bins, minimum=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double().numpy()
    conf_np = conf.double().numpy()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins ((m-1)/M, m/M]; index m-1. Confidence 0 falls into the first bin.
    index = np.clip(np.searchsorted(edges, conf_np, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_conf = np.bincount(index, weights=conf_np, minlength=n_bins)
    sum_acc = np.bincount(index, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = sum_conf / counts
        mean_acc = sum_acc / counts
    # Eq. (8.2): ECE = sum_m |B_m|/N * |acc(B_m) - conf(B_m)| = (1/N) sum_m |sum acc - sum conf|
    ece = float(np.abs(sum_acc - sum_conf).sum() / len(conf_np))
    return ReliabilityDiagram(edges, mean_conf, mean_acc, counts, ece)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    r"""Expected calibration error with equal-width bins (Naeini et al. 2015; Guo et al. 2017).

    .. math:: \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{N} \big|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\big|

    (book Eq. (8.2)): the average gap between confidence and accuracy, weighted by how many
    predictions fall into each confidence bin. 0 is perfect; a model that always says 99 % but
    is right 90 % of the time has ECE 0.09. See :func:`reliability_diagram` for the binning.
    """
    return reliability_diagram(probs, labels, n_bins).ece


def plot_reliability_diagram(
    diagram: ReliabilityDiagram,
    *,
    ax: Any = None,
    label: str | None = None,
    title: str | None = "Reliability diagram",
    color: str | None = None,
    kind: str = "bar",
) -> Any:
    """Draw accuracy per confidence bin against the diagonal of perfect calibration.

    Pass the result of :func:`reliability_diagram`. ``kind="bar"`` draws one bar per bin (the
    classic diagram of Guo et al. 2017); ``kind="line"`` draws each non-empty bin as a point at
    (mean confidence, accuracy), its area proportional to the bin's size, which overlays well
    when several models or a model before and
    after temperature scaling share one ``ax``. The legend shows the ECE. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if not isinstance(diagram, ReliabilityDiagram):
        raise TypeError(
            f"diagram must be a ReliabilityDiagram (from reliability_diagram()), got {type(diagram).__name__}"
        )
    check_choice("kind", kind, ("bar", "line"))
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    filled = diagram.counts > 0
    text = f"{label + ': ' if label else ''}ECE = {diagram.ece:.3f}"
    if kind == "bar":
        width = np.diff(diagram.bin_edges)
        ax.bar(
            diagram.bin_edges[:-1][filled],
            diagram.accuracy[filled],
            width=width[filled],
            align="edge",
            alpha=0.5,
            edgecolor="black",
            color=color,
            label=text,
        )
    else:
        (line,) = ax.plot(diagram.confidence[filled], diagram.accuracy[filled], lw=1.2, color=color, label=text)
        # marker area proportional to the number of predictions in the bin: small bins are noisy
        sizes = 200 * diagram.counts[filled] / diagram.counts.max()
        ax.scatter(diagram.confidence[filled], diagram.accuracy[filled], s=np.maximum(sizes, 6), color=line.get_color(),
                   alpha=0.8, zorder=3)
    has_diagonal = "perfect calibration" in ax.get_legend_handles_labels()[1]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label=None if has_diagonal else "perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top predicted probability)")
    ax.set_ylabel("accuracy in bin")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left")
    return ax


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood (cross-entropy) of ``labels`` under ``softmax(logits)``."""
    check_tensor("logits", logits, ndim=2, dtype="float")
    check_labels("labels", labels, num_classes=logits.shape[1])
    if len(labels) != len(logits):
        raise ValueError(f"logits and labels must have the same length, got {len(logits)} and {len(labels)}")
    return float(F.cross_entropy(logits.detach().float(), labels))


class TemperatureScaler(nn.Module):
    r"""Temperature scaling (Guo et al. 2017), book Eq. (8.3): ``forward(logits) = logits / T``.

    A single scalar :math:`T > 0` is fitted on held-out *validation* logits by minimising the
    negative log-likelihood, :math:`T^\star = \arg\min_T -\frac1N \sum_i \log
    \operatorname{softmax}(z_i / T)_{y_i}`, with L-BFGS. :math:`T > 1` softens an over-confident
    model, :math:`T < 1` sharpens an under-confident one. The arg-max, hence accuracy, precision,
    recall and F1, never changes. Never fit it on the test split.

    The parameter is :math:`\log T` so that the optimiser cannot make :math:`T` negative.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_positive("temperature", temperature)
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(temperature))))

    @property
    def temperature(self) -> float:
        """The current temperature :math:`T` as a float."""
        return float(self.log_temperature.detach().exp())

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        check_tensor("logits", logits, ndim=2, dtype="float")
        return logits / self.log_temperature.exp().to(logits.dtype)

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> TemperatureScaler:
        """Fit :math:`T` on validation ``logits`` ``(N, K)`` and ``labels`` ``(N,)``; returns ``self``."""
        check_tensor("logits", logits, ndim=2, dtype="float")
        check_finite("logits", logits)
        check_labels("labels", labels, num_classes=logits.shape[1])
        if len(labels) != len(logits):
            raise ValueError(f"logits and labels must have the same length, got {len(logits)} and {len(labels)}")
        if len(labels) == 0:
            raise ValueError("logits is empty: expected at least one validation example")
        max_iter = check_int("max_iter", max_iter, minimum=1)
        z = logits.detach().double().cpu()
        y = labels.detach().cpu()
        _warn_if_no_optimum(z, y)
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(z / log_t.exp(), y)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            self.log_temperature.copy_(log_t.detach().float())
        return self

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4f}"


def _warn_if_no_optimum(z: torch.Tensor, y: torch.Tensor) -> None:
    """Warn when the NLL has no finite minimiser :math:`T^\\star` (it is convex in :math:`\beta = 1/T`).

    Its slope in :math:`\beta` is :math:`\frac1N\\sum_i (\\mathbb{E}_{p_\beta}[z_i] - z_{i,y_i})`: at
    :math:`\beta = 0` that is the mean of (average logit − true logit); as :math:`\beta \to \\infty`
    it tends to the mean of (max logit − true logit).
    """
    true = z.gather(1, y[:, None]).squeeze(1)
    if bool((z.max(1).values - true <= 0).all()):
        warnings.warn(
            "every validation example is classified correctly, so the NLL keeps falling as T → 0: there is no "
            "finite optimal temperature and the fitted T is just where the optimiser stopped. Use more (or harder) "
            "validation data", RuntimeWarning, stacklevel=3)
    elif float((z.mean(1) - true).mean()) >= 0:
        warnings.warn(
            "the true classes score at or below the average logit, so the NLL keeps falling as T → ∞ (uniform "
            "predictions): there is no finite optimal temperature. Check that the labels match the logits",
            RuntimeWarning, stacklevel=3)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    r"""Fit a :class:`TemperatureScaler` on validation logits and return :math:`T^\star`."""
    return TemperatureScaler().fit(logits, labels, max_iter=max_iter).temperature


def bootstrap_ci(
    values: Any,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval of the mean of per-example ``values``.

    For the accuracy pass the 0/1 vector ``(predictions == labels)``. The test set is resampled
    with replacement ``n_resamples`` times; the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of the resampled means (Efron & Tibshirani 1993). It
    measures the uncertainty due to the *finite test set* only, not the variation over training
    seeds (report that separately as mean ± std over seeds).

    Returns:
        ``(estimate, low, high)``.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D (one number per test example), got shape {values.shape}")
    if len(values) == 0:
        raise ValueError("values is empty: expected at least one example")
    if not np.isfinite(values).all():
        raise ValueError("values contains NaN or infinite entries")
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    check_probability("confidence", confidence)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    # resample in chunks to keep memory small for large test sets
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // len(values))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[idx].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(values.mean()), float(low), float(high)
