"""Table-driven bad-input tests for label-free selection and CDAN (same shape as test_bad_input.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlcourse.adapt.cdan import CDANLoss, entropy_weights, multilinear_map
from tlcourse.adapt.selection import (
    density_ratio,
    dev_risk,
    iwcv_risk,
    labelled_target_validation,
    outputs_of,
    prediction_entropy,
    select,
    snd_score,
)

F2 = np.random.default_rng(0).normal(size=(10, 2))
P = np.full((6, 3), 1 / 3)
L = np.ones(5)

Y20 = np.arange(20) % 2
T2, T3 = torch.rand(2, 4), torch.rand(2, 3)

CASES = [
    ("density_ratio list", lambda: density_ratio([[0.0]], F2, F2), TypeError, "source_fit"),
    ("density_ratio 1-D", lambda: density_ratio(F2[:, 0], F2, F2), ValueError, "source_fit"),
    ("density_ratio columns", lambda: density_ratio(F2, F2[:, :1], F2), ValueError, "columns"),
    ("density_ratio NaN", lambda: density_ratio(F2, np.full((4, 2), np.nan), F2), ValueError, "target_fit"),
    ("density_ratio C<=0", lambda: density_ratio(F2, F2, F2, C=0.0), ValueError, "C"),
    ("density_ratio clip<=0", lambda: density_ratio(F2, F2, F2, clip=-1.0), ValueError, "clip"),
    ("iwcv length mismatch", lambda: iwcv_risk(L, np.ones(4)), ValueError, "same length"),
    ("iwcv negative weight", lambda: iwcv_risk(L, -L), ValueError, "weights"),
    ("iwcv infinite loss", lambda: iwcv_risk(np.r_[L, np.inf], np.ones(6)), ValueError, "losses"),
    ("dev 2-D losses", lambda: dev_risk(F2, np.ones(10)), ValueError, "losses"),
    ("dev empty", lambda: dev_risk(np.ones(0), np.ones(0)), ValueError, "losses"),
    ("snd logits not probs", lambda: snd_score(F2), ValueError, "softmax"),
    ("snd temperature 0", lambda: snd_score(P, temperature=0.0), ValueError, "temperature"),
    ("snd NaN", lambda: snd_score(np.full((3, 2), np.nan)), ValueError, "probs"),
    ("entropy 1-D", lambda: prediction_entropy(np.ones(3)), ValueError, "probs"),
    ("target val per_class 0", lambda: labelled_target_validation(Y20, per_class=0), ValueError, "per_class"),
    ("target val too few", lambda: labelled_target_validation(Y20, per_class=10), ValueError, "per_class"),
    ("target val seed", lambda: labelled_target_validation(Y20, seed=-1), ValueError, "seed"),
    ("select unknown criterion", lambda: select({"a": {"x": 1.0}}, "accuracy"), ValueError, "criterion"),
    ("select empty", lambda: select({}, "iwcv"), ValueError, "scores"),
    ("select missing score", lambda: select({"a": {"snd": 1.0}}, "iwcv"), ValueError, "iwcv"),
    ("select all NaN", lambda: select({"a": {"iwcv": float("nan")}}, "iwcv"), ValueError, "NaN"),
    ("outputs_of no protocol", lambda: outputs_of(torch.nn.Linear(2, 2), torch.rand(3, 2)), TypeError, "backbone"),
    ("multilinear rows", lambda: multilinear_map(torch.rand(3, 2), torch.rand(4, 2)), ValueError, "rows"),
    ("entropy_weights 1-D", lambda: entropy_weights(torch.rand(3)), ValueError, "probs"),
    ("CDAN one class", lambda: CDANLoss(4, 1), ValueError, "num_classes"),
    ("CDAN no logits", lambda: CDANLoss(4, 3)(torch.rand(2, 4), torch.rand(2, 4)), ValueError, "logits"),
    ("CDAN logits shape", lambda: CDANLoss(4, 3)(T2, T2, torch.rand(2, 5), T3),
     ValueError, "logits_s"),
    ("CDAN feature size", lambda: CDANLoss(4, 3)(torch.rand(2, 5), torch.rand(2, 5), T3, T3),
     ValueError, "columns"),
]


@pytest.mark.parametrize("label, fn, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_adapt(label, fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()
