"""Table-driven bad-input tests for chapter 4's recipes (text fine-tuning, baselines, SimCSE).

Each row is (label, callable, expected exception, a regex the message must match).
"""

from __future__ import annotations

import pytest
import torch

from tlcourse.data.text import TextDataset
from tlcourse.text_adapt import simcse_loss, train_simcse
from tlcourse.text_baselines import fit_probe, fit_tfidf_logreg
from tlcourse.text_finetune import linear_warmup_decay, predict_texts, step_loader

DATA = TextDataset(["good", "bad"], [1, 0])
Z2, Z3 = torch.randn(2, 4), torch.randn(3, 4)

CASES = [
    ("simcse views of different shapes", lambda: simcse_loss(Z3, Z2), ValueError, "same shape"),
    ("simcse batch of one", lambda: simcse_loss(torch.randn(1, 4), torch.randn(1, 4)), ValueError, "at least two"),
    ("simcse temperature 0", lambda: simcse_loss(Z2, Z2, temperature=0.0), ValueError, "temperature"),
    ("simcse on one text", lambda: train_simcse(torch.nn.Linear(1, 1), None, ["only one"]), ValueError, "at least two"),
    ("tfidf without texts", lambda: fit_tfidf_logreg([], []), ValueError, "non-empty"),
    ("tfidf with one class", lambda: fit_tfidf_logreg(["a b", "c d"], [1, 1]), ValueError, "two classes"),
    ("tfidf labels of wrong length", lambda: fit_tfidf_logreg(["a", "b"], [0, 1, 1]), ValueError, "one entry per"),
    ("probe on 1-D features", lambda: fit_probe(torch.randn(4), [0, 1, 0, 1]), ValueError, r"\(N, D\)"),
    ("probe with C = 0", lambda: fit_probe(torch.randn(4, 2), [0, 1, 0, 1], C=0.0), ValueError, "C"),
    ("step loader of no steps", lambda: step_loader(DATA, None, steps=0), ValueError, "steps"),
    ("step loader of a list", lambda: step_loader(["good"], None, steps=1), ValueError, "TextDataset"),
    ("warm-up as long as training", lambda: linear_warmup_decay(10, 10), ValueError, "warmup"),
    ("predict a single string", lambda: predict_texts(torch.nn.Linear(1, 1), None, "good"), ValueError, "texts"),
]


@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_text(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()
