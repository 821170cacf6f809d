"""Tuned arms on an equal step budget: the building blocks of chapter 1's comparisons.

The protocol (:mod:`tlcourse.protocol`) asks that every method of a comparison, training from
scratch included, gets its hyper-parameters chosen on validation from a grid declared up front
and the same budget of optimizer steps. This module provides the two kinds of arm chapter 1
compares, each tuned that way:

* :func:`tune_training` — a network (pretrained or random) trained for exactly ``steps``
  optimizer steps at each learning rate of a grid; the rate with the best validation accuracy
  wins (:func:`tlcourse.protocol.tune`).
* :func:`tune_probe` — feature extraction: logistic regression on frozen, standardised features,
  its inverse regularisation strength ``C`` chosen on validation.

:func:`budget_loader` makes the step budget exact whatever the size of the training set: it
draws ``steps`` batches from repeated seeded permutations of the data, so a 10-image set and a
1,000-image set get the same number of updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from tlcourse.checks import check_int
from tlcourse.protocol import TuneResult, tune
from tlcourse.train import evaluate, fit
from tlcourse.train.features import extract_features

__all__ = ["StepSampler", "budget_loader", "train_for_steps", "tune_training", "tune_probe", "ProbeModel",
           "FirstSeedTuner"]


class StepSampler(Sampler[int]):
    """Indices of ``steps × batch_size`` draws: seeded permutations of ``range(n)``, one after
    another, so every example is seen equally often (up to the last, partial permutation)."""

    def __init__(self, n: int, steps: int, batch_size: int, seed: int) -> None:
        check_int("n", n, minimum=1)
        check_int("steps", steps, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        check_int("seed", seed, minimum=0)
        self.n, self.total, self.seed = n, steps * batch_size, seed

    def __len__(self) -> int:
        return self.total

    def __iter__(self):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(self.seed)
        reps = -(-self.total // self.n)
        order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[: self.total]
        return iter(order.tolist())


def budget_loader(data: Dataset, steps: int, batch_size: int, seed: int = 0) -> DataLoader:
    """A loader of exactly ``steps`` batches of ``batch_size`` drawn from ``data`` (one "epoch")."""
    if not isinstance(data, Dataset) or len(data) == 0:  # type: ignore[arg-type]
        raise ValueError("data must be a non-empty torch Dataset")
    return DataLoader(data, batch_size=batch_size, sampler=StepSampler(len(data), steps, batch_size, seed))  # type: ignore[arg-type]


def train_for_steps(model: nn.Module, train: Dataset, *, steps: int, lr: float, batch_size: int = 16,
                    seed: int = 0, weight_decay: float = 0.0) -> nn.Module:
    """Train every trainable weight of ``model`` with AdamW for exactly ``steps`` steps."""
    fit(model, budget_loader(train, steps, batch_size, seed), epochs=1, lr=lr, weight_decay=weight_decay,
        seed=seed, progress=False)
    return model


#: ``trainer(model, train, val, lr, seed)``: trains ``model`` in place (any recipe).
Trainer = Callable[[nn.Module, Dataset, Dataset, float, int], Any]


def tune_training(make_model: Callable[[int], nn.Module], train: Dataset, val: Dataset, *, lrs: Sequence[float],
                  steps: int, batch_size: int = 16, seed: int = 0, trainer: Trainer | None = None) -> TuneResult:
    """Train ``make_model(seed)`` for ``steps`` steps at each rate of ``lrs``; keep the best on ``val``.

    Every arm (scratch, fine-tuning, a misleading backbone) goes through this same search, so
    none is favoured by its learning rate or its number of updates. ``trainer`` replaces the
    fixed-step AdamW run by another recipe (e.g. :func:`tlcourse.lpft.finetune`'s schedule and
    early stopping); ``steps`` and ``batch_size`` are then the trainer's business.
    """
    if isinstance(make_model, nn.Module) or not callable(make_model):
        raise TypeError("make_model must be a function seed -> nn.Module (a fresh model per run), "
                        f"got {type(make_model).__name__}")

    def train_fn(params: dict[str, Any], s: int) -> nn.Module:
        if trainer is not None:
            model = make_model(s)
            trainer(model, train, val, params["lr"], s)
            return model
        return train_for_steps(make_model(s), train, steps=steps, lr=params["lr"], batch_size=batch_size, seed=s)

    return tune(train_fn, lambda m: evaluate(m, val)["accuracy"], {"lr": list(lrs)}, seed=seed)


class ProbeModel:
    """A frozen backbone and a scikit-learn classifier on its features: ``predict(data)``."""

    def __init__(self, backbone: nn.Module, classifier: Any) -> None:
        self.backbone, self.classifier = backbone, classifier

    def predict(self, data: Any) -> np.ndarray:
        x, _ = extract_features(self.backbone, data)
        return self.classifier.predict(x.numpy())


def tune_probe(backbone: nn.Module, train: Dataset, val: Dataset, *, Cs: Sequence[float] = (0.01, 0.1, 1.0),
               seed: int = 0, features: tuple[Any, Any] | None = None) -> TuneResult:
    """Feature extraction: logistic regression on ``backbone``'s frozen, standardised features,
    with ``C`` chosen on ``val``. ``best`` is a :class:`ProbeModel`.

    ``features`` may pass precomputed ``((x_train, y_train), (x_val, y_val))`` to skip extraction.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xt, yt), (xv, yv) = features if features is not None else (extract_features(backbone, train),
                                                                extract_features(backbone, val))
    xt, yt, xv, yv = (np.asarray(a) for a in (xt, yt, xv, yv))

    def train_fn(params: dict[str, Any], s: int) -> ProbeModel:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=1000, random_state=s))
        return ProbeModel(backbone, clf.fit(xt, yt))

    return tune(train_fn, lambda p: float((p.classifier.predict(xv) == yv).mean()), {"C": list(Cs)}, seed=seed)


class FirstSeedTuner:
    """Tune each arm's learning rate once, on the first seed's validation split, then reuse it.

    ``run(key, make_model, train, val, seed)`` searches ``lrs`` with :func:`tune_training` the
    first time it sees ``key`` (an arm and a setting, e.g. ``("scratch", 10)``) and trains at the
    chosen rate afterwards: every arm gets the same search, at a third of the cost of tuning
    every seed. Returns ``(model, validation accuracy)``; ``chosen`` and ``grids`` keep the record.
    """

    def __init__(self, lrs: Sequence[float], steps: int, batch_size: int = 16, trainer: Trainer | None = None) -> None:
        if not lrs:
            raise ValueError("lrs must be a non-empty list of learning rates")
        check_int("steps", steps, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        self.lrs, self.steps, self.batch_size, self.trainer = list(lrs), steps, batch_size, trainer
        self.chosen: dict[Any, float] = {}
        self.grids: dict[Any, list[tuple[dict[str, Any], float]]] = {}

    def run(self, key: Any, make_model: Callable[[int], nn.Module], train: Dataset, val: Dataset,
            seed: int) -> tuple[nn.Module, float]:
        if key not in self.chosen:
            res = tune_training(make_model, train, val, lrs=self.lrs, steps=self.steps, batch_size=self.batch_size,
                                seed=seed, trainer=self.trainer)
            self.chosen[key], self.grids[key] = res.best_params["lr"], res.scores
            return res.best, res.best_score
        model = make_model(seed)
        if self.trainer is not None:
            self.trainer(model, train, val, self.chosen[key], seed)
        else:
            train_for_steps(model, train, steps=self.steps, lr=self.chosen[key], batch_size=self.batch_size, seed=seed)
        return model, evaluate(model, val)["accuracy"]
