"""Bad input of tlcourse.budget and tlcourse.negative_transfer: clear errors naming the argument."""

from __future__ import annotations

import pytest
import torch

from tlcourse.budget import StepSampler, budget_loader, tune_probe, tune_training
from tlcourse.data import ArrayDataset
from tlcourse.models import SmallResNet
from tlcourse.negative_transfer import misleading_backbone, random_backbone, with_new_head

DS = ArrayDataset(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]))

CASES = [
    ("sampler zero steps", lambda: StepSampler(4, 0, 2, 0), ValueError, "steps"),
    ("sampler zero batch", lambda: StepSampler(4, 2, 0, 0), ValueError, "batch_size"),
    ("sampler empty data", lambda: StepSampler(0, 2, 2, 0), ValueError, "n"),
    ("budget loader empty", lambda: budget_loader(DS.subset([]), 2, 2), ValueError, "data"),
    ("budget loader not a dataset", lambda: budget_loader([1, 2], 2, 2), ValueError, "data"),
    ("tune_training model not callable", lambda: tune_training(SmallResNet(2), DS, DS, lrs=[1e-3], steps=1),
     TypeError, "make_model"),
    ("tune_training empty grid", lambda: tune_training(lambda s: SmallResNet(2), DS, DS, lrs=[], steps=1),
     ValueError, "grid"),
    ("tune_probe empty grid", lambda: tune_probe(torch.nn.Flatten(), DS, DS, Cs=[]), ValueError, "grid"),
    ("misleading zero steps", lambda: misleading_backbone(steps=0), ValueError, "steps"),
    ("misleading negative lr", lambda: misleading_backbone(lr=-1.0), ValueError, "lr"),
    ("random backbone negative seed", lambda: random_backbone(-1), ValueError, "seed"),
    ("new head zero classes", lambda: with_new_head(SmallResNet(2), 0), ValueError, "num_classes"),
]


@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()
