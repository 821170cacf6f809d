"""Argument validation shared by the package.

Every public function validates what a learner is likely to get wrong and raises a
``ValueError``/``TypeError`` whose message names the argument and what was expected, instead of
letting a deep PyTorch traceback (or worse, a silent wrong result) through.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "check_int",
    "check_positive",
    "check_non_negative",
    "check_probability",
    "check_choice",
    "check_tensor",
    "check_finite",
    "check_not_constant",
    "set_value_checks",
    "value_checks",
    "value_checks_enabled",
    "check_labels",
    "check_same_length",
    "check_not_empty",
    "check_feature_pair",
]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` must be an int (not a bool), optionally ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(value, "__index__") and not isinstance(value, bool):
            value = int(value.__index__())
        else:
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_positive(name: str, value: Any) -> float:
    """``value`` must be a finite number > 0."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_non_negative(name: str, value: Any) -> float:
    """``value`` must be a finite number >= 0."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """``value`` must be a number in [0, 1]."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` must be one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_tensor(
    name: str,
    x: Any,
    ndim: int | Sequence[int] | None = None,
    dtype: str | torch.dtype | None = None,
) -> torch.Tensor:
    """``x`` must be a tensor with ``ndim`` dimensions and the given dtype kind.

    ``dtype`` may be a :class:`torch.dtype` or one of ``"float"`` (any floating point) and
    ``"int"`` (any integer type).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            shape = "x".join(map(str, x.shape)) or "scalar"
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {shape}")
    if dtype == "float":
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    elif dtype == "int":
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    elif dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {x.dtype}")
    return x


_VALUE_CHECKS = [True]


def set_value_checks(enabled: bool) -> None:
    """Turn the checks that *read tensor values* (NaN/inf, zero variance) on or off, everywhere.

    They are on by default. Each one reduces a tensor and reads the result on the host. On a CPU
    that is one extra pass over the data (measured on the course's 2-core machine under heavy
    load: 0.44 ms per 256 × 128 feature batch; ``CORALLoss`` 3.8 ms with its checks, 1.8 ms
    without — small next to a network's forward and backward pass). On a GPU it is a device
    sync per checked call, which stalls the pipeline. Turn them off there once your pipeline is known
    to be sound. Inside the package's training loops (:class:`tlcourse.train.Engine`) they are off:
    the engine checks every loss itself (each step on a CPU, every few steps on an accelerator)
    and says which loss turned NaN at which step. ``TLCOURSE_CHECK_VALUES=0`` does
    the same from the environment; :func:`value_checks` for a ``with`` block.
    """
    _VALUE_CHECKS[0] = bool(enabled)


@contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """``with value_checks(False): ...`` runs a block without the value checks (see :func:`set_value_checks`)."""
    before = _VALUE_CHECKS[0]
    _VALUE_CHECKS[0] = bool(enabled)
    try:
        yield
    finally:
        _VALUE_CHECKS[0] = before


def value_checks_enabled() -> bool:
    """Whether value checks run now (on, not switched off by env, not inside ``torch.compile``)."""
    if not _VALUE_CHECKS[0]:
        return False
    if os.environ.get("TLCOURSE_CHECK_VALUES", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not torch.compiler.is_compiling()


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` must contain no NaN or infinity (skipped when value checks are off: one device sync)."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and value_checks_enabled() and x.numel():
        if not bool(torch.isfinite(x.detach()).all()):
            n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            raise ValueError(
                f"{name} contains NaN or infinite values ({n_nan} NaN, {n_inf} inf of {x.numel()}): a loss computed "
                "from them would be nan. Look upstream (inputs, learning rate, a division by zero)"
            )
    return x


def check_not_constant(name: str, x: torch.Tensor, what: str) -> None:
    """Warn when every row of an ``(n, d)`` batch is the same point (collapsed features); ``what`` says why."""
    if value_checks_enabled() and x.ndim == 2 and len(x) >= 2 and x.is_floating_point():
        if float((x.detach() - x.detach()[:1]).abs().max()) == 0.0:
            warnings.warn(f"{name} has zero variance (every row is the same point, e.g. collapsed features): {what}",
                          RuntimeWarning, stacklevel=3)


def check_labels(name: str, y: Any, num_classes: int | None = None) -> torch.Tensor:
    """``y`` must be a 1-D integer tensor of class indices in ``[0, num_classes)``.

    One-hot ``(N, C)``, float and string labels get a message that says how to convert them.
    """
    if isinstance(y, torch.Tensor) and y.ndim == 2 and y.shape[1] > 1:
        raise ValueError(f"{name} look one-hot or like scores (shape {tuple(y.shape)}): pass class indices, "
                         f"e.g. {name}.argmax(1)")
    if isinstance(y, torch.Tensor) and (y.is_floating_point() or y.dtype == torch.bool):
        raise TypeError(f"{name} must be integer class indices (int64), got {y.dtype}: use {name}.long() if they "
                        "are whole numbers")
    check_tensor(name, y, ndim=1, dtype="int")
    if y.numel() and y.min() < 0:
        raise ValueError(f"{name} must hold class indices >= 0, found {int(y.min())}")
    if num_classes is not None and y.numel() and y.max() >= num_classes:
        raise ValueError(f"{name} must hold class indices in [0, {num_classes}), found {int(y.max())}")
    return y


def check_same_length(**named: Any) -> int:
    """All arguments must have the same length (first dimension); returns it."""
    lengths = {key: len(value) for key, value in named.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{key}={n}" for key, n in lengths.items())
        raise ValueError(f"{' and '.join(lengths)} must have the same length, got {described}")
    return next(iter(lengths.values()), 0)


def check_not_empty(name: str, value: Any) -> Any:
    """``value`` (a dataset, tensor or sequence) must not be empty."""
    if len(value) == 0:
        raise ValueError(f"{name} is empty: expected at least one example")
    return value


def check_feature_pair(f_s: Any, f_t: Any, names: tuple[str, str] = ("f_s", "f_t")) -> None:
    """Source and target features must be non-empty, finite 2-D float tensors with the same width."""
    a, b = names
    check_tensor(a, f_s, ndim=2, dtype="float")
    check_tensor(b, f_t, ndim=2, dtype="float")
    if len(f_s) == 0 or len(f_t) == 0:
        raise ValueError(f"{a} and {b} must be non-empty batches, got {len(f_s)} and {len(f_t)} rows")
    if f_s.shape[1] != f_t.shape[1]:
        raise ValueError(f"{a} and {b} must have the same feature dimension, got {f_s.shape[1]} and {f_t.shape[1]}")
    check_finite(a, f_s)
    check_finite(b, f_t)
