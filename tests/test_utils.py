import time

import numpy as np
import pytest
import torch

from tlcourse import checks
from tlcourse.utils import Timer, get_device, glue, seed_everything


def test_seed_everything_repeats_all_generators():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError)])
def test_seed_everything_rejects_bad_seeds(bad, exc):
    with pytest.raises(exc, match="seed"):
        seed_everything(bad)


def test_get_device_default_and_explicit():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(None).type in {"cpu", "cuda", "mps"}


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", 3])
def test_get_device_rejects_unknown(bad):
    with pytest.raises((ValueError, TypeError), match="device"):
        get_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_cuda_missing_is_clear():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        get_device("cuda")


def test_timer_measures():
    with Timer() as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 1.0


def test_glue_returns_plain_values():
    assert glue("x", np.float32(0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="name"):
        glue("", 1)


def test_checks_messages_name_the_argument():
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        checks.check_positive("lr", -0.1)
    with pytest.raises(ValueError, match="temperature"):
        checks.check_positive("temperature", float("nan"))
    with pytest.raises(ValueError, match=r"labels must hold class indices in \[0, 3\)"):
        checks.check_labels("labels", torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="integer"):
        checks.check_labels("labels", torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        checks.check_tensor("x", torch.zeros(2, 3), ndim=4)
    with pytest.raises(ValueError, match="a and b must have the same length"):
        checks.check_same_length(a=[1, 2], b=[1])
    with pytest.raises(ValueError, match="data is empty"):
        checks.check_not_empty("data", [])
    with pytest.raises(ValueError, match="mode must be one of"):
        checks.check_choice("mode", "x", ["a", "b"])
    with pytest.raises(ValueError, match="alpha must be in"):
        checks.check_probability("alpha", 1.5)
    with pytest.raises(ValueError, match="x contains NaN"):
        checks.check_finite("x", torch.tensor([1.0, float("inf")]))
