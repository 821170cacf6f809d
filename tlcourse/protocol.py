"""The protocol every comparison in the book follows: split, tune, seal, repeat, compare, claim.

1. **Validation split** from the labelled pool, stratified (:func:`validation_split`); the test
   set is never used to choose anything.
2. **Equal footing**: every method, scratch and baselines included, gets its hyper-parameters
   chosen on validation from a grid declared up front (:func:`tune`), with the same budget.
3. **A sealed test set** (:class:`Study`): claims are declared first (:class:`Claim`), then the
   test set is opened once per (method, seed); opening it early or twice is a
   :class:`SealedTestError`.
4. **Seeds and intervals**: mean, std over seeds and a 95% CI per method; paired differences
   with a CI from a bootstrap over seeds and test examples (:mod:`tlcourse.intervals`).
5. **Claims asserted on the CI bound**, never on the mean (:meth:`Study.assert_claims`).

A chapter declares, runs, then asserts::

    train, val = validation_split(pool, val_fraction=0.2, seed=0)
    study = Study("k=10", test=test_data, seeds=[0, 1, 2])
    study.declare(Claim("transfer beats scratch", a="full", b="scratch", at_least=0.0))
    for seed in study.seeds:   # for each method: tune on validation, then open the test once
        res = tune(train_fn, score_on_val, grid={"lr": [1e-3, 3e-3, 1e-2]}, seed=seed)
        study.evaluate("full", seed, lambda test: predict(res.best, test))
    study.assert_claims(); study.table(glue_prefix="ch03_k10")
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from tlcourse.intervals import Interval, PairedDifference, mean_ci, paired_bootstrap, two_way_bootstrap

__all__ = ["SealedTestError", "validation_split", "tune", "TuneResult", "Study", "Claim", "ClaimResult",
           "paired_bootstrap", "mean_ci", "Interval", "PairedDifference"]


class SealedTestError(RuntimeError):
    """The test set was touched before the claims were declared, or twice for one run."""


def _labels_of(data: Any, labels: Any, name: str) -> np.ndarray:
    raw = labels if labels is not None else getattr(data, "labels", None)
    if raw is None:
        raise TypeError(f"{name} has no .labels: pass labels=... (one class index per example)")
    y = np.asarray(raw.detach().cpu() if isinstance(raw, torch.Tensor) else raw)
    if y.ndim != 1 or len(y) != len(data):
        raise ValueError(f"labels must be 1-D with one entry per example of {name} ({len(data)}), got shape {y.shape}")
    return y


def _subset(data: Any, idx: np.ndarray) -> Any:
    return data.subset(idx) if hasattr(data, "subset") else Subset(data, idx.tolist())


def validation_split(
    pool: Any, val_fraction: float = 0.2, seed: int = 0, *, labels: Any = None, per_class: int | None = None
) -> tuple[Any, Any]:
    """Split a labelled pool into (train, validation), stratified by class and seeded.

    Take it from the labelled training pool, never from the test set. Each class keeps at least
    one example on each side; ``per_class`` puts exactly that many per class in validation
    instead of a fraction. Datasets with ``.subset`` (``ArrayDataset``, ``TextDataset``) return
    their own type, others a ``torch.utils.data.Subset``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if per_class is None and (not isinstance(val_fraction, float) or not 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be a float in (0, 1), got {val_fraction!r}")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    if not hasattr(pool, "__len__") or len(pool) == 0:
        raise ValueError("pool is empty: expected a labelled dataset with at least two examples per class")
    y = _labels_of(pool, labels, "pool")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = per_class if per_class is not None else int(round(len(idx) * val_fraction))
        if len(idx) < 2 or n_val >= len(idx):
            raise ValueError(f"class {c} has {len(idx)} example(s): a stratified split needs more than "
                             f"{max(n_val, 1)} per class (use a larger pool or a smaller per_class/val_fraction)")
        n_val = max(1, n_val)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return _subset(pool, rng.permutation(np.concatenate(train))), _subset(pool, rng.permutation(np.concatenate(val)))


@dataclass
class TuneResult:
    """What :func:`tune` chose: the best parameters, their validation score, the whole grid."""

    best_params: dict[str, Any]
    best_score: float
    scores: list[tuple[dict[str, Any], float]]
    best: Any = field(default=None, repr=False)

    def frame(self) -> Any:
        """The grid as a DataFrame (one row per setting, its validation score)."""
        import pandas as pd

        return pd.DataFrame([{**p, "val_score": s} for p, s in self.scores])


def tune(
    train_fn: Callable[[dict[str, Any], int], Any],
    score_fn: Callable[[Any], float],
    grid: Mapping[str, Sequence[Any]],
    seed: int = 0,
    maximize: bool = True,
) -> TuneResult:
    """Grid search on validation: train every setting of ``grid`` and keep the best.

    ``train_fn(params, seed)`` trains one setting (with the method's fixed step budget) and
    returns the trained object; ``score_fn(trained)`` scores it **on validation**. The grid is
    declared before anything runs and is the same kind of search for every method. Ties go to
    the setting listed first; NaN scores lose.
    """
    if not callable(train_fn) or not callable(score_fn):
        raise TypeError("train_fn and score_fn must be callables")
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid must be a non-empty dict of name -> list of values, e.g. {'lr': [1e-3, 1e-2]}")
    for name, values in grid.items():
        if (not isinstance(name, str) or isinstance(values, (str, bytes)) or not isinstance(values, Sequence)
                or not values):
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
    best, best_score, best_params, scores = None, -math.inf, None, []
    for combo in itertools.product(*grid.values()):
        params = dict(zip(grid.keys(), combo))
        trained = train_fn(dict(params), seed)
        score = float(score_fn(trained))
        scores.append((params, score))
        key = score if maximize else -score
        if not math.isnan(score) and (best_params is None or key > best_score):
            best, best_score, best_params = trained, key, params
        else:
            del trained
    if best_params is None:
        raise ValueError("every setting of the grid scored NaN on validation")
    return TuneResult(dict(best_params), best_score if maximize else -best_score, scores, best)


@dataclass(frozen=True)
class Claim:
    """A comparison declared before the test set is opened, asserted on its CI bound.

    ``statistic="difference"``: ``mean(a) − mean(b)`` (or ``mean(a)`` alone when ``b`` is None).
    ``statistic="share_of_gain"``: ``(a − reference) / (b − reference)``, the share of ``b``'s
    gain over ``reference`` (a number such as chance accuracy, or another method's name) that
    ``a`` keeps. ``at_least`` is checked on the CI's lower bound, ``at_most`` on its upper bound.
    """

    name: str
    a: str
    b: str | None = None
    at_least: float | None = None
    at_most: float | None = None
    statistic: str = "difference"
    reference: float | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not isinstance(self.a, str):
            raise TypeError("Claim needs a name (str) and a method a (str)")
        if self.at_least is None and self.at_most is None:
            raise ValueError(f"claim {self.name!r}: give at_least and/or at_most (the bound to assert)")
        if self.statistic not in ("difference", "share_of_gain"):
            raise ValueError(f"claim {self.name!r}: statistic must be 'difference' or 'share_of_gain', "
                             f"got {self.statistic!r}")
        if self.statistic == "share_of_gain" and (self.b is None or self.reference is None):
            raise ValueError(f"claim {self.name!r}: share_of_gain needs b and a reference (e.g. chance accuracy)")


@dataclass(frozen=True)
class ClaimResult:
    """A checked claim: its estimate, CI and whether the bound held."""

    claim: Claim
    estimate: PairedDifference
    passed: bool
    message: str


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_")


class Study:
    """One comparison of methods on a sealed test set, over the same seeds.

    Args:
        name: what is compared (shown in messages).
        test: the test data; it is handed to the ``predict_fn`` of :meth:`evaluate` only.
        seeds: the seeds every method runs with (≥ 3 for a claim; pairing needs the same ones).
        labels: test labels when ``test`` has no ``.labels``.
        n_boot, confidence, boot_seed: settings of the bootstrap intervals.
    """

    def __init__(self, name: str, test: Any, seeds: Sequence[int], *, labels: Any = None,
                 n_boot: int = 2000, confidence: float = 0.95, boot_seed: int = 0) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        if not hasattr(test, "__len__") or len(test) == 0:
            raise ValueError("test is empty: expected a test set with at least one example")
        seeds = list(seeds)
        bad_seed = any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)
        if not seeds or bad_seed or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds!r}")
        self.name, self.seeds, self.n_boot, self.confidence, self.boot_seed = name, seeds, n_boot, confidence, boot_seed
        self.__test = test
        has_labels = labels is not None or hasattr(test, "labels")
        self.__labels = _labels_of(test, labels, "test") if has_labels else None
        self.n_test = len(test)
        self.claims: list[Claim] | None = None
        self._values: dict[str, dict[int, np.ndarray]] = {}

    @property
    def test(self) -> Any:
        raise SealedTestError(f"the test set of study {self.name!r} is sealed: open it through study.evaluate()")

    def declare(self, *claims: Claim) -> Study:
        """State the claims before the test set is opened (may be none: a descriptive study)."""
        if self._values:
            raise SealedTestError(f"study {self.name!r}: claims must be declared before the test set is opened")
        if self.claims is not None:
            raise SealedTestError(f"study {self.name!r}: claims were already declared")
        if not all(isinstance(c, Claim) for c in claims):
            raise TypeError(f"declare takes Claim objects, got {[type(c).__name__ for c in claims]}")
        self.claims = list(claims)
        return self

    def _open(self, method: str, seed: int) -> None:
        if not isinstance(method, str) or not method:
            raise ValueError("method must be a non-empty string")
        if seed not in self.seeds:
            raise ValueError(f"seed must be one of the study's seeds {self.seeds}, got {seed!r}")
        if self.claims is None:
            raise SealedTestError(f"study {self.name!r}: declare the claims (study.declare(...)) "
                                  "before opening the test set")
        if seed in self._values.get(method, {}):
            raise SealedTestError(f"study {self.name!r}: the test set was already opened for ({method!r}, seed {seed})")

    def _store(self, method: str, seed: int, values: Any) -> float:
        v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
        if v.ndim == 2 and self.__labels is not None:  # scores or logits: the predicted class
            v = v.argmax(1)
        if v.ndim != 1 or len(v) != self.n_test:
            raise ValueError(f"expected one prediction or value per test example ({self.n_test}), got shape {v.shape}")
        if v.dtype.kind in "iu" and self.__labels is not None:
            v = (v == self.__labels).astype(float)
        elif v.dtype.kind == "f" and self.__labels is not None and ((v < 0) | (v > 1)).any():
            raise ValueError("float values outside [0, 1] on a labelled test set: return predicted labels as ints, "
                             "class scores (N, C), or per-example values (use study.record for other metrics)")
        if not np.isfinite(v := v.astype(float)).all():
            raise ValueError(f"the values of ({method!r}, seed {seed}) contain NaN or infinity")
        self._values.setdefault(method, {})[seed] = v
        return float(v.mean())

    def evaluate(self, method: str, seed: int, predict_fn: Callable[[Any], Any]) -> float:
        """Open the test set once for ``(method, seed)``: ``predict_fn(test)`` returns predicted
        labels (ints), class scores ``(N, C)`` or per-example values (floats). Returns the mean."""
        self._open(method, seed)
        if not callable(predict_fn):
            raise TypeError("predict_fn must be a callable taking the test data")
        return self._store(method, seed, predict_fn(self.__test))

    def record(self, method: str, seed: int, values: Any) -> float:
        """Store per-example test values computed elsewhere (same rules as :meth:`evaluate`)."""
        self._open(method, seed)
        return self._store(method, seed, values)

    def pick(self, name: str, seed: int, method: str) -> None:
        """Record ``method``'s stored test values under ``name`` for ``seed`` without reopening the
        test set, e.g. ``pick("best_transfer", seed, chosen_on_validation)``."""
        self._open(name, seed)
        if seed not in self._values.get(method, {}):
            raise ValueError(f"{method!r} has no test values for seed {seed} to pick")
        self._values.setdefault(name, {})[seed] = self._values[method][seed]

    @property
    def methods(self) -> list[str]:
        return list(self._values)

    def matrix(self, method: str, seeds: Sequence[int] | None = None) -> np.ndarray:
        """``(seeds, examples)`` per-example values of ``method`` (in the study's seed order)."""
        if method not in self._values:
            raise ValueError(f"unknown method {method!r}; evaluated so far: {self.methods}")
        have = self._values[method]
        seeds = [s for s in self.seeds if s in have] if seeds is None else list(seeds)
        missing = [s for s in seeds if s not in have]
        if missing:
            raise ValueError(f"{method!r} has no test values for seeds {missing} (pairing needs the same seeds)")
        return np.stack([have[s] for s in seeds])

    def _kw(self) -> dict[str, Any]:
        return {"n_boot": self.n_boot, "confidence": self.confidence, "seed": self.boot_seed}

    def interval(self, method: str) -> Interval:
        """Mean of ``method`` over seeds and test examples, with its CI."""
        return mean_ci(self.matrix(method), **self._kw())

    def summary(self) -> Any:
        """DataFrame: method, mean, std (over seeds), ci_low, ci_high, n_seeds."""
        import pandas as pd

        rows = []
        for m in self.methods:
            x, ci = self.matrix(m), self.interval(m)
            std = float(x.mean(1).std(ddof=1)) if len(x) > 1 else 0.0
            rows.append({"method": m, "mean": ci.mean, "std": std, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                         "n_seeds": len(x)})
        return pd.DataFrame(rows, columns=["method", "mean", "std", "ci_low", "ci_high", "n_seeds"])

    def _paired_seeds(self, *methods: str, seeds: Sequence[int] | None = None) -> list[int]:
        for m in methods:
            self.matrix(m)  # unknown method → clear error
        if seeds is not None:  # an explicit subset, e.g. the seeds a costlier method ran on
            seeds = list(seeds)
            if not seeds or any(s not in self.seeds for s in seeds) or len(set(seeds)) != len(seeds):
                raise ValueError(f"seeds must be distinct seeds of the study {self.seeds}, got {seeds!r}")
            for m in methods:
                self.matrix(m, seeds)  # a method without one of them → clear error
            return seeds
        sets = [set(self._values[m]) for m in methods]
        if any(s != sets[0] for s in sets):
            raise ValueError(f"{' and '.join(map(repr, methods))} were evaluated on different seeds "
                             f"({[sorted(s) for s in sets]}); a paired comparison needs the same seeds")
        return [s for s in self.seeds if s in sets[0]]

    def common_seeds(self, *methods: str) -> list[int]:
        """The study's seeds on which every one of ``methods`` was evaluated (in the study's order)."""
        for m in methods:
            self.matrix(m)
        return [s for s in self.seeds if all(s in self._values[m] for m in methods)]

    def compare(self, a: str, b: str, *, seeds: Sequence[int] | None = None) -> PairedDifference:
        """Paired difference ``a − b`` (same seeds, same test examples) with its CI.

        Both methods must have run on the same seeds, or ``seeds`` names the subset to pair on
        (e.g. ``study.common_seeds(a, b)`` when one method ran on fewer seeds)."""
        seeds = self._paired_seeds(a, b, seeds=seeds)
        return paired_bootstrap(self.matrix(a, seeds), self.matrix(b, seeds), **self._kw())

    def share_of_gain(self, a: str, b: str, reference: float | str, *,
                      seeds: Sequence[int] | None = None) -> PairedDifference:
        """``(a − reference) / (b − reference)`` with its CI; ``reference`` a number or a method;
        ``seeds`` as in :meth:`compare`."""
        names = (a, b) + ((reference,) if isinstance(reference, str) else ())
        seeds = self._paired_seeds(*names, seeds=seeds)
        ref = self.matrix(reference, seeds) if isinstance(reference, str) else float(reference)
        return two_way_bootstrap(self.matrix(a, seeds), self.matrix(b, seeds), statistic="share_of_gain",
                                 reference=ref, **self._kw())

    def _estimate(self, c: Claim) -> PairedDifference:
        if c.statistic == "share_of_gain":
            return self.share_of_gain(c.a, c.b, c.reference)  # type: ignore[arg-type]
        if c.b is None:
            i = self.interval(c.a)
            return PairedDifference(i.mean, i.ci_low, i.ci_high, i.std_err, i.n_seeds, i.n_items, i.confidence, "mean")
        return self.compare(c.a, c.b)

    def check_claims(self) -> list[ClaimResult]:
        """Check every declared claim on its CI bound (``at_least`` ≤ low, high ≤ ``at_most``)."""
        if self.claims is None:
            raise SealedTestError(f"study {self.name!r}: no claims were declared")
        results = []
        for c in self.claims:
            e = self._estimate(c)
            ok_low = c.at_least is None or e.ci_low >= c.at_least
            ok_high = c.at_most is None or e.ci_high <= c.at_most
            what = {"difference": f"{c.a} − {c.b}", "mean": c.a,
                    "share_of_gain": f"({c.a} − {c.reference}) / ({c.b} − {c.reference})"}[e.statistic]
            low = f"CI low {e.ci_low:.4f} >= {c.at_least}" if c.at_least is not None else ""
            high = f"CI high {e.ci_high:.4f} <= {c.at_most}" if c.at_most is not None else ""
            bounds = " and ".join(s for s in (low, high) if s)
            msg = (f"{'PASS' if ok_low and ok_high else 'FAIL'} [{self.name}] {c.name}: {what} = {e.mean:.4f}, "
                   f"{int(round(100 * e.confidence))}% CI [{e.ci_low:.4f}, {e.ci_high:.4f}] over {e.n_seeds} seeds "
                   f"× {e.n_items} test examples; required {bounds}")
            results.append(ClaimResult(c, e, ok_low and ok_high, msg))
        return results

    def assert_claims(self) -> list[ClaimResult]:
        """:meth:`check_claims`, raising ``AssertionError`` that names every failed claim."""
        results = self.check_claims()
        failed = [r.message for r in results if not r.passed]
        if failed:
            raise AssertionError("\n".join(failed))
        return results

    def table(self, glue_prefix: str | None = None, *, baseline: str | None = None,
              methods: Sequence[str] | None = None,
              scale: float = 100.0, digits: int = 1, column: str | None = None) -> Any:
        """Results as "mean ± half-width" cells (95% CI), one row per method; optionally the
        paired difference to ``baseline``. With ``glue_prefix`` every shown cell is glued as
        ``{prefix}_{method}`` (and ``{prefix}_{method}_vs_{baseline}``, ``{prefix}_{method}_n``)."""
        import pandas as pd

        from tlcourse.utils import glue

        column = column or f"{self.name} (mean ± 95% CI)"
        rows = {}
        for m in methods or self.methods:
            ci = self.interval(m)
            row = {column: ci.format(scale, digits), "seeds": len(self.matrix(m))}
            if baseline is not None and m != baseline:  # paired on the seeds both ran on
                diff = self.compare(m, baseline, seeds=self.common_seeds(m, baseline))
                row[f"vs {baseline}"] = diff.format(scale, digits, signed=True)
            elif baseline is not None:
                row[f"vs {baseline}"] = "—"
            rows[m] = row
            if glue_prefix:
                key = f"{glue_prefix}_{_slug(m)}"
                glue(key, row[column])
                glue(f"{key}_n", row["seeds"])
                if baseline is not None and m != baseline:
                    glue(f"{key}_vs_{_slug(baseline)}", row[f"vs {baseline}"])
        return pd.DataFrame.from_dict(rows, orient="index")

    def __repr__(self) -> str:
        state = "sealed" if not self._values else f"opened for {sum(map(len, self._values.values()))} runs"
        return f"Study({self.name!r}, n_test={self.n_test}, seeds={self.seeds}, methods={self.methods}, {state})"
