"""Tuned arms on an equal step budget (tlcourse.budget) and the negative-transfer backbones."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tlcourse.budget import StepSampler, budget_loader, train_for_steps, tune_probe, tune_training
from tlcourse.data import ArrayDataset
from tlcourse.models import SmallResNet
from tlcourse.negative_transfer import misleading_backbone, random_backbone, with_new_head


def _blobs(n_per_class: int = 20, seed: int = 0) -> ArrayDataset:
    """Two classes told apart by the brightness of the left half: a task a tiny net learns at once."""
    g = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.rand(2 * n_per_class, 1, 28, 28, generator=g)
    y = torch.arange(2 * n_per_class) % 2
    x[y == 1, :, :, :14] += 0.7
    return ArrayDataset(x, y)


def test_step_sampler_draws_exactly_the_budget_and_balances_examples():
    sampler = StepSampler(n=10, steps=7, batch_size=4, seed=3)
    order = list(sampler)
    assert len(order) == len(sampler) == 28
    counts = np.bincount(order, minlength=10)
    assert counts.max() - counts.min() <= 1  # repeated permutations: every example seen about equally
    assert order == list(StepSampler(n=10, steps=7, batch_size=4, seed=3))  # seeded
    assert order != list(StepSampler(n=10, steps=7, batch_size=4, seed=4))


def test_budget_loader_gives_the_same_number_of_steps_for_any_set_size():
    for n in (3, 50):
        loader = budget_loader(_blobs(n), steps=5, batch_size=8, seed=0)
        assert len(loader) == 5 and sum(1 for _ in loader) == 5


def test_train_for_steps_counts_optimizer_steps():
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    train_for_steps(model, _blobs(4), steps=6, lr=1e-2, batch_size=4)
    assert len(calls) == 6


def test_tune_training_picks_the_rate_that_learns():
    torch.manual_seed(0)
    data = _blobs(16)
    res = tune_training(lambda s: SmallResNet(2, widths=(4, 8, 8)), data, _blobs(16, seed=1),
                        lrs=[1e-9, 1e-2], steps=15, batch_size=8, seed=0)
    assert res.best_params == {"lr": 1e-2}
    assert res.best_score > 0.9 and [p["lr"] for p, _ in res.scores] == [1e-9, 1e-2]


def test_tune_probe_chooses_C_on_validation_and_predicts():
    backbone = nn.Flatten()  # "features" = pixels: the task is linearly separable
    res = tune_probe(backbone, _blobs(10), _blobs(10, seed=1), Cs=[1e-6, 1.0])
    assert res.best_score == 1.0
    assert (res.best.predict(_blobs(5, seed=2)) == (np.arange(10) % 2)).all()


def test_negative_transfer_backbones():
    model, acc = misleading_backbone(steps=3, n_per_class=1, batch_size=8)
    assert isinstance(model, SmallResNet) and 0.0 <= acc <= 1.0
    clone = with_new_head(model, 10, seed=0)
    assert clone.head.out_features == 10 and model.head.out_features == 8  # the source is untouched
    assert torch.equal(clone.backbone.stem[0].weight, model.backbone.stem[0].weight)
    assert torch.equal(random_backbone(1).backbone.stem[0].weight, random_backbone(1).backbone.stem[0].weight)
