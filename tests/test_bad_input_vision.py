"""Bad input to the strategies on the protocol (table-driven, like tests/test_bad_input.py)."""

from __future__ import annotations

import pytest
import torch

from tlcourse.data import ArrayDataset
from tlcourse.models import SmallResNet, load_pretrained
from tlcourse.strategies import Budget, copy_stages, recipe_table, train_strategy, tune_strategy

DS = ArrayDataset(torch.rand(4, 3, 28, 28), torch.tensor([0, 1, 0, 1]))
EMPTY = DS.subset([])


def net(c: int = 2) -> SmallResNet:
    return SmallResNet(c, widths=(4, 8, 8))


CASES = [
    ("train_strategy unknown strategy", lambda: train_strategy("magic", DS, DS, lr=1e-3), ValueError, "strategy"),
    ("train_strategy lr <= 0", lambda: train_strategy("full", DS, DS, lr=-1.0, make_model=net), ValueError, "lr"),
    ("train_strategy lr int", lambda: train_strategy("full", DS, DS, lr=1, make_model=net), ValueError, "lr"),
    ("train_strategy empty train", lambda: train_strategy("full", EMPTY, DS, lr=1e-3, make_model=net),
     ValueError, "empty"),
    ("tune_strategy unknown strategy", lambda: tune_strategy("magic", DS, DS), ValueError, "strategy"),
    ("Budget steps=0", lambda: Budget(steps=0), ValueError, "steps"),
    ("Budget patience=0", lambda: Budget(patience=0), ValueError, "patience"),
    ("copy_stages n too large", lambda: copy_stages(net(), net(), 5), ValueError, "n must be"),
    ("copy_stages n negative", lambda: copy_stages(net(), net(), -1), ValueError, "n"),
    ("recipe_table unknown strategy", lambda: recipe_table(strategies=["magic"]), ValueError, "strategies"),
    ("load_pretrained unknown letters name", lambda: load_pretrained(name="letters"), ValueError, "name"),
]


@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()
