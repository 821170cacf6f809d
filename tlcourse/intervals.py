"""Confidence intervals over seeds *and* test examples: the statistics behind ``tlcourse.protocol``.

A score measured on a test set varies for two reasons: the training run (seed, few-shot sample,
initialisation) and the test sample itself. A result matrix ``X[s, i]`` (seed ``s``, test
example ``i``, e.g. 1 if example ``i`` was classified correctly) carries both. The interval of
its mean comes from a **two-way ("pigeonhole") bootstrap** (Owen 2007): each replicate resamples
the seeds *and* the test examples with replacement. Two methods evaluated on the same seeds and
the same test examples are compared **paired**: the same resampled seeds and examples enter both
arms, so what they have in common (hard examples, lucky seeds) cancels out of the difference.

The bootstrap replicates give the interval its *shape* (asymmetry, and ratios such as the share
of a gain kept). Its *width* is calibrated so that three seeds do not look surer than they are:

* the variance of the mean is the unbiased one of a crossed seeds × examples design, from the
  mean squares of the two-way layout; the plain pigeonhole bootstrap counts the seed × example
  interaction twice (too wide) and shrinks the seed part by ``(S−1)/S`` (too narrow);
* the quantile is Student's ``t`` with Welch–Satterthwaite degrees of freedom instead of the
  normal ``z``, the idea of Hesterberg's (2015) expanded percentile interval. With many seeds
  and examples both corrections vanish.

``tests/test_protocol.py`` checks in simulation that the 95% interval covers the true
difference about 95% of the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Interval", "PairedDifference", "as_matrix", "two_way_bootstrap", "paired_bootstrap", "mean_ci"]

STATISTICS: tuple[str, ...] = ("mean", "difference", "share_of_gain")


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (``ci_low``, ``ci_high``)."""

    mean: float
    ci_low: float
    ci_high: float
    std_err: float = float("nan")
    n_seeds: int = 0
    n_items: int = 0
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width (what "mean ± half-width" shows)."""
        return 0.5 * (self.ci_high - self.ci_low)

    def format(self, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
        """``"61.3 ± 2.1"`` (values multiplied by ``scale``; ``signed`` adds a ``+``)."""
        sign = "+" if signed else ""
        return f"{self.mean * scale:{sign}.{digits}f} ± {self.half_width * scale:.{digits}f}"

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"


@dataclass(frozen=True)
class PairedDifference(Interval):
    """A paired comparison ``statistic(a, b)`` over the same seeds and test examples."""

    statistic: str = "difference"


def as_matrix(name: str, values: Any) -> np.ndarray:
    """``values`` as a float ``(seeds, examples)`` matrix; a 1-D input is one value per seed."""
    try:
        x = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers (a list, array or tensor), got {type(values).__name__}") from err
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D (seeds) or 2-D (seeds × examples) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _variance(lin: np.ndarray) -> tuple[float, float]:
    """Variance of the grand mean of ``lin`` in a crossed seeds × examples design, and its df.

    With mean squares of the two-way layout, ``Var(mean) = (MS_seed + MS_item − MS_err) / (S·N)``
    (unbiased; the seed × example interaction is counted once). Degrees of freedom by
    Welch–Satterthwaite. Floored at the larger single component, so it is never negative.
    """
    s, n = lin.shape
    row, col, grand = lin.mean(1, keepdims=True), lin.mean(0, keepdims=True), lin.mean()
    terms = []  # (coefficient × mean square, degrees of freedom)
    if s > 1:
        terms.append((n * ((row - grand) ** 2).sum() / (s - 1), s - 1))
    if n > 1:
        terms.append((s * ((col - grand) ** 2).sum() / (n - 1), n - 1))
    if s > 1 and n > 1:
        terms.append((-((lin - row - col + grand) ** 2).sum() / ((s - 1) * (n - 1)), (s - 1) * (n - 1)))
    total = sum(t for t, _ in terms)
    floor = max([t for t, _ in terms if t > 0], default=0.0)
    if total < floor:
        total, terms = floor, [max(terms, key=lambda t: t[0])]
    denom = sum(t**2 / df for t, df in terms)
    return total / (s * n), (total**2 / denom if denom > 0 else float("inf"))


def _replicates(mats: list[np.ndarray], n_boot: int, rng: np.random.Generator, chunk: int = 500) -> list[np.ndarray]:
    """Means of every matrix under the same resampled seeds and examples, ``n_boot`` times."""
    s, n = mats[0].shape
    transposed = [np.ascontiguousarray(m.T) for m in mats]  # (n, s): a fast matmul layout
    out: list[list[np.ndarray]] = [[] for _ in mats]
    chunk = min(chunk, n_boot)
    seed_offsets, item_offsets = np.arange(chunk).repeat(s) * s, np.arange(chunk).repeat(n) * n
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        rows = seed_offsets[: b * s] + rng.integers(0, s, b * s)
        w_seed = np.bincount(rows, minlength=b * s).reshape(b, s).astype(float)
        cols = item_offsets[: b * n] + rng.integers(0, n, b * n)
        w_item = np.bincount(cols, minlength=b * n).reshape(b, n).astype(float)
        for k, mt in enumerate(transposed):
            out[k].append(((w_item @ mt) * w_seed).sum(1) / (s * n))
    return [np.concatenate(o) for o in out]


def two_way_bootstrap(
    a: Any,
    b: Any = None,
    *,
    statistic: str = "difference",
    reference: Any = 0.0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Estimate and CI of ``statistic`` over seeds × test examples (see the module docstring).

    Args:
        a, b: ``(seeds, examples)`` per-example values of two methods (same seeds and examples,
            in the same order); ``b=None`` with ``statistic="mean"`` gives the CI of ``a``'s mean.
        statistic: ``"mean"`` (of ``a``), ``"difference"`` (``a − b``) or ``"share_of_gain"``
            (``(a − ref) / (b − ref)``: the share of ``b``'s gain over ``reference`` that ``a`` keeps).
        reference: a number (e.g. chance accuracy) or a matrix like ``a`` (another method).
    """
    from scipy import stats

    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {list(STATISTICS)}, got {statistic!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot must be an int >= 100, got {n_boot!r}")
    if not isinstance(confidence, float) or not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be a float in [0.5, 1), got {confidence!r}")
    ma = as_matrix("a", a)
    mats = [ma]
    if statistic != "mean":
        if b is None:
            raise ValueError(f"statistic={statistic!r} needs b (the second method's values)")
        mb = as_matrix("b", b)
        if mb.shape != ma.shape:
            raise ValueError(f"a and b must be paired (same seeds × examples), got shapes {ma.shape} and {mb.shape}")
        mats.append(mb)
    if statistic == "share_of_gain":
        ref = np.full(ma.shape, float(reference)) if np.ndim(reference) == 0 else as_matrix("reference", reference)
        try:
            ref = np.broadcast_to(ref, ma.shape)
        except ValueError:
            raise ValueError(f"reference must be a number or values of shape {ma.shape}, got {ref.shape}") from None
        mats = [ma - ref, mats[1] - ref]
        if mats[1].mean() <= 0:
            raise ValueError("share_of_gain needs b to beat the reference on average (no gain to share)")
    if statistic == "difference":
        mats = [mats[0] - mats[1]]
    est = mats[0].mean() / mats[1].mean() if statistic == "share_of_gain" else mats[0].mean()
    lin = mats[0] - est * mats[1] if statistic == "share_of_gain" else mats[0]
    if statistic == "share_of_gain":
        lin = lin / mats[1].mean()
    var, df = _variance(lin)
    reps = _replicates(mats, n_boot, np.random.default_rng(seed))
    rep = reps[0] / reps[1] if statistic == "share_of_gain" else reps[0]
    alpha = 1.0 - confidence
    s, n = ma.shape
    if statistic == "share_of_gain" and _gain_may_vanish(mats[1], alpha):
        # Fieller (1954): when b's own gain is not surely above the reference, the ratio's
        # interval is unbounded; a finite one would be an artefact of the resampling.
        return PairedDifference(mean=float(est), ci_low=-np.inf, ci_high=np.inf, std_err=float(np.sqrt(var)),
                                n_seeds=s, n_items=n, confidence=confidence, statistic=statistic)
    lo, hi = np.quantile(rep, [alpha / 2, 1 - alpha / 2])
    # A ratio's replicates have heavy tails: its spread is read robustly (IQR / 1.349).
    q25, q75 = np.quantile(rep, [0.25, 0.75])
    boot_sd = float((q75 - q25) / 1.349) if statistic == "share_of_gain" else float(rep.std())
    scale = np.sqrt(var) / boot_sd if boot_sd > 0 else 0.0
    widen = scale * (stats.t.ppf(1 - alpha / 2, df) / stats.norm.ppf(1 - alpha / 2) if np.isfinite(df) else 1.0)
    return PairedDifference(
        mean=float(est), ci_low=float(est - widen * (est - lo)), ci_high=float(est + widen * (hi - est)),
        std_err=float(np.sqrt(var)), n_seeds=s, n_items=n, confidence=confidence, statistic=statistic,
    )


def _gain_may_vanish(gain: np.ndarray, alpha: float) -> bool:
    """Whether the (1 − alpha) interval of ``gain``'s mean reaches zero (or is degenerate)."""
    from scipy import stats

    var, df = _variance(gain)
    if not var > 0:
        return False
    t = stats.t.ppf(1 - alpha / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - alpha / 2)
    return float(gain.mean()) - t * float(np.sqrt(var)) <= 0.0


def paired_bootstrap(a: Any, b: Any, **kwargs: Any) -> PairedDifference:
    """Paired difference ``mean(a) − mean(b)`` with its CI (two-way bootstrap, see module doc)."""
    return two_way_bootstrap(a, b, statistic=kwargs.pop("statistic", "difference"), **kwargs)


def mean_ci(values: Any, confidence: float = 0.95, **kwargs: Any) -> Interval:
    """Mean and CI of ``values``.

    A 1-D input is one number per seed: Student's t interval over seeds. A 2-D input is
    ``(seeds, examples)``: the two-way bootstrap (module docstring).
    """
    from scipy import stats

    x = as_matrix("values", values)
    if x.shape[1] > 1:
        r = two_way_bootstrap(x, statistic="mean", confidence=confidence, **kwargs)
        return Interval(r.mean, r.ci_low, r.ci_high, r.std_err, r.n_seeds, r.n_items, confidence)
    if not isinstance(confidence, float) or not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be a float in [0.5, 1), got {confidence!r}")
    v = x[:, 0]
    m = float(v.mean())
    if len(v) < 2:
        return Interval(m, m, m, float("nan"), 1, 1, confidence)
    se = float(v.std(ddof=1) / np.sqrt(len(v)))
    h = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * se)
    return Interval(m, m - h, m + h, se, len(v), 1, confidence)
