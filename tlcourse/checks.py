"""Argument validation shared by the package.

Every public function validates what a learner is likely to get wrong and raises a
``ValueError``/``TypeError`` whose message names the argument and what was expected, instead of
letting a deep PyTorch traceback (or worse, a silent wrong result) through.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` must contain no NaN or infinity."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


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


def check_feature_pair(f_s: Any, f_t: Any) -> None:
    """Source and target features must be non-empty 2-D float tensors with the same width."""
    check_tensor("f_s", f_s, ndim=2, dtype="float")
    check_tensor("f_t", f_t, ndim=2, dtype="float")
    if len(f_s) == 0 or len(f_t) == 0:
        raise ValueError(f"f_s and f_t must be non-empty batches, got {len(f_s)} and {len(f_t)} rows")
    if f_s.shape[1] != f_t.shape[1]:
        raise ValueError(f"f_s and f_t must have the same feature dimension, got {f_s.shape[1]} and {f_t.shape[1]}")
