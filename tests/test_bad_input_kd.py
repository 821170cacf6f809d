"""Bad input to tlcourse.compress: clear ValueError/TypeError naming the argument (table-driven)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlcourse.compress import (
    magnitude_prune,
    measure_latency,
    quantize_dynamic_int8,
    quantize_static_int8,
    size_on_disk,
    sparsity,
)

LIN = nn.Linear(4, 2)
NO_WEIGHTS = nn.Sequential(nn.ReLU())

CASES = [
    ("size_on_disk not a module", lambda: size_on_disk({"w": torch.zeros(2)}), TypeError, "model"),
    ("size_on_disk compressed not bool", lambda: size_on_disk(LIN, compressed="yes"), TypeError, "compressed"),
    ("sparsity no layers", lambda: sparsity(NO_WEIGHTS), ValueError, "nn.Conv2d or nn.Linear"),
    ("prune amount 1", lambda: magnitude_prune(LIN, 1.0), ValueError, "amount"),
    ("prune amount negative", lambda: magnitude_prune(LIN, -0.1), ValueError, "amount"),
    ("prune amount string", lambda: magnitude_prune(LIN, "half"), ValueError, "amount"),
    ("prune no layers", lambda: magnitude_prune(NO_WEIGHTS, 0.5), ValueError, "prune"),
    ("prune not a module", lambda: magnitude_prune([1, 2], 0.5), TypeError, "model"),
    ("dynamic quantization not a module", lambda: quantize_dynamic_int8("net"), TypeError, "model"),
    ("static quantization empty calibration", lambda: quantize_static_int8(LIN, torch.zeros(0, 4)), ValueError,
     "calibration"),
    ("static quantization integer calibration", lambda: quantize_static_int8(LIN, torch.zeros(3, 4, dtype=torch.long)),
     TypeError, "calibration"),
    ("static quantization calibration list", lambda: quantize_static_int8(LIN, 5), TypeError, "calibration"),
    ("static quantization unknown backend", lambda: quantize_static_int8(LIN, torch.zeros(3, 4), backend="tpu"),
     ValueError, "backend"),
    ("static quantization batch_size 0", lambda: quantize_static_int8(LIN, torch.zeros(3, 4), batch_size=0),
     ValueError, "batch_size"),
    ("latency example not a tensor", lambda: measure_latency(LIN, [1.0, 2.0]), TypeError, "example"),
    ("latency example 1-D", lambda: measure_latency(LIN, torch.zeros(4)), ValueError, "example"),
    ("latency batch_sizes int", lambda: measure_latency(LIN, torch.zeros(1, 4), batch_sizes=64), ValueError,
     "batch_sizes"),
    ("latency batch size 0", lambda: measure_latency(LIN, torch.zeros(1, 4), batch_sizes=[0]), ValueError,
     "batch_sizes"),
    ("latency min_run_time 0", lambda: measure_latency(LIN, torch.zeros(1, 4), min_run_time=0.0), ValueError,
     "min_run_time"),
    ("latency num_threads 0", lambda: measure_latency(LIN, torch.zeros(1, 4), num_threads=0), ValueError,
     "num_threads"),
]


@pytest.mark.parametrize("label, call, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_case_labels_are_unique():
    labels = [c[0] for c in CASES]
    assert len(labels) == len(set(labels))
