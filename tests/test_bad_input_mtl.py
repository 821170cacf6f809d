"""Bad input to the multi-task controls (chapter 5): rows of (label, callable, exception, regex)."""

from __future__ import annotations

import pytest
import torch

from tlcourse.data import ArrayDataset
from tlcourse.multitask import label_association, shuffled_labels, unlabelled_loss

DS = ArrayDataset(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 0, 1, 0, 1]))

CASES = [
    ("unlabelled_loss not a tensor", lambda: unlabelled_loss([1.0], torch.zeros(1)), TypeError, "outputs"),
    ("shuffled_labels not a dataset", lambda: shuffled_labels([1, 2, 3]), TypeError, "dataset"),
    ("shuffled_labels negative seed", lambda: shuffled_labels(DS, seed=-1), ValueError, "seed"),
    ("shuffled_labels empty", lambda: shuffled_labels(DS.subset([])), ValueError, "empty"),
    ("label_association lengths", lambda: label_association([0, 1], [0, 1, 2]), ValueError, "same length"),
    ("label_association 2-D", lambda: label_association([[0, 1]], [[0, 1]]), ValueError, "1-D"),
    ("label_association empty", lambda: label_association([], []), ValueError, "empty"),
]


@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()
