"""The first version of the strategy runner (kept for callers of ``compare``/``run_strategy``).

Its recipes are *not* on the protocol: fixed learning rates (the heads get ten times the rate of
scratch and full fine-tuning), no validation split, no early stopping, and gradual unfreezing
runs fewer steps than the rest. Chapter 3 shows why that flatters transfer; new code should use
:mod:`tlcourse.strategies` (every strategy tuned on validation with the same step budget).

========================  =====================================================================
``scratch``               same architecture, random initialisation, all weights trained
``linear_probe``          frozen pretrained backbone, new linear head trained with SGD/AdamW
``probe_sklearn``         features extracted once, scikit-learn logistic regression on them
``partial``               lower stages frozen, top stage + head fine-tuned
``full``                  every weight fine-tuned at one learning rate
``discriminative``        every weight fine-tuned, rates decaying toward the input, Eq. (eq-disc)
``gradual``               head first, then one more stage per phase (ULMFiT)
``l2sp``                  full fine-tuning with the L2-SP penalty toward the pretrained weights
========================  =====================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tlcourse.checks import check_choice, check_int, check_positive
from tlcourse.data.digits import ArrayDataset, few_shot
from tlcourse.finetune import (
    STAGES,
    L2SPLoss,
    count_parameters,
    discriminative_param_groups,
    extract_features,
    gradual_unfreezing,
    trainable_stages,
)
from tlcourse.models.pretrained import load_pretrained
from tlcourse.models.resnet import SmallResNet
from tlcourse.train import evaluate, fit
from tlcourse.utils import seed_everything

__all__ = ["LEGACY_STRATEGIES", "StrategyResult", "probe_accuracy", "run_strategy", "compare"]

LEGACY_STRATEGIES: tuple[str, ...] = ("scratch", "linear_probe", "probe_sklearn", "partial", "full", "discriminative",
                                      "gradual", "l2sp")


@dataclass
class StrategyResult:
    """One trained strategy: test accuracy, trainable parameters, wall time."""

    strategy: str
    k: int | None
    seed: int
    accuracy: float
    trainable: int
    total: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def probe_accuracy(
    backbone: nn.Module, train: ArrayDataset, test: ArrayDataset, C: float = 1.0, seed: int = 0
) -> float:
    """Feature extraction: logistic regression on frozen, standardised features, test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_positive("C", C)
    x_train, y_train = extract_features(backbone, train)
    x_test, y_test = extract_features(backbone, test)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    clf.fit(x_train.numpy(), y_train.numpy())
    return float((clf.predict(x_test.numpy()) == y_test.numpy()).mean())


def _epochs_for(n: int, batch_size: int, steps: int) -> int:
    return max(1, math.ceil(steps / math.ceil(n / batch_size)))


def run_strategy(
    strategy: str,
    train: ArrayDataset,
    test: ArrayDataset,
    *,
    seed: int = 0,
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 1e-3,
    make_pretrained: Callable[[int], nn.Module] | None = None,
    k: int | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    l2sp_alpha: float = 0.01,
) -> StrategyResult:
    """Train one strategy on ``train`` and measure it on ``test``.

    Args:
        strategy: one of :data:`LEGACY_STRATEGIES`.
        steps: optimizer steps (about; whole epochs are run).
        lr: learning rate of the head (and of the whole model for ``scratch``/``full``).
        make_pretrained: ``num_classes → model`` with pretrained backbone and fresh head
            (default: :func:`~tlcourse.models.load_pretrained`).
        augment: optional per-image training transform.
    """
    check_choice("strategy", strategy, LEGACY_STRATEGIES)
    check_int("steps", steps, minimum=1)
    check_positive("lr", lr)
    if len(train) == 0:
        raise ValueError("train is empty: expected at least one example")
    num_classes = train.num_classes
    make_pretrained = make_pretrained or (lambda c: load_pretrained(c))
    seed_everything(seed)
    start = time.perf_counter()
    data = train.with_transform(augment) if augment is not None else train
    epochs = _epochs_for(len(train), batch_size, steps)
    if strategy == "scratch":
        model: nn.Module = SmallResNet(num_classes)
        fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    else:
        model = make_pretrained(num_classes)
        if strategy == "probe_sklearn":
            acc = probe_accuracy(model.backbone, train, test, seed=seed)
            return StrategyResult(strategy, k, seed, acc, model.head.weight.numel() + model.head.bias.numel(),
                                  count_parameters(model), time.perf_counter() - start)
        if strategy == "linear_probe":
            trainable_stages(model, 1)
            fit(model, data, epochs=epochs, lr=10 * lr, batch_size=batch_size, seed=seed)
        elif strategy == "partial":
            trainable_stages(model, 2)
            opt = torch.optim.AdamW(discriminative_param_groups(model, 10 * lr, decay=0.1))
            fit(model, data, epochs=epochs, optimizer=opt, batch_size=batch_size, seed=seed)
        elif strategy == "full":
            fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        elif strategy == "discriminative":
            opt = torch.optim.AdamW(discriminative_param_groups(model, 10 * lr, decay=0.3))
            fit(model, data, epochs=epochs, optimizer=opt, batch_size=batch_size, seed=seed)
        elif strategy == "gradual":
            per_stage = max(1, epochs // len(STAGES))
            gradual_unfreezing(model, data, epochs_per_stage=per_stage, lr=10 * lr, decay=0.3, batch_size=batch_size,
                               seed=seed)
        elif strategy == "l2sp":
            fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                loss_fn=L2SPLoss(model, alpha=l2sp_alpha, beta=l2sp_alpha))
    acc = evaluate(model, test)["accuracy"]
    return StrategyResult(strategy, k, seed, acc, count_parameters(model, trainable_only=True), count_parameters(model),
                          time.perf_counter() - start)


def compare(
    strategies: Sequence[str],
    train: ArrayDataset,
    test: ArrayDataset,
    ks: Sequence[int | None],
    seeds: Sequence[int] = (0, 1, 2),
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Run every strategy for every label budget ``k`` (``None`` = all labels) and seed.

    The same ``k``-shot subset (drawn with the seed) is shared by all strategies. Returns one
    record per run (ready for ``pandas.DataFrame``).
    """
    for s in strategies:
        check_choice("strategies", s, LEGACY_STRATEGIES)
    if not ks or not seeds:
        raise ValueError("ks and seeds must not be empty")
    records = []
    for k in ks:
        for seed in seeds:
            subset = train if k is None else few_shot(train, k, seed=seed)
            for s in strategies:
                records.append(run_strategy(s, subset, test, seed=seed, k=k, **kwargs).as_dict())
    return records


def summarise(records: Sequence[dict[str, Any]], by: Sequence[str] = ("strategy", "k")) -> Any:
    """Mean and std of accuracy (and mean time, trainable parameters) per group (a DataFrame)."""
    import pandas as pd

    frame = pd.DataFrame(list(records))
    frame["k"] = frame["k"].fillna(-1).astype(int)
    out = frame.groupby(list(by)).agg(
        accuracy=("accuracy", "mean"), std=("accuracy", "std"), seconds=("seconds", "mean"),
        trainable=("trainable", "first"), runs=("accuracy", "size"),
    )
    out["std"] = out["std"].fillna(0.0)
    return out.reset_index()


__all__.append("summarise")
