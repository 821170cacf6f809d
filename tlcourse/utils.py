"""Seeding, device selection, timing, parameter counts and book helpers shared by every chapter."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "get_device", "Timer", "glue", "num_threads_hint", "count_parameters"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so that runs repeat exactly on CPU."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


_DEVICE_TYPES = ("cpu", "cuda", "mps")


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    ``None`` picks the best available one (cuda → mps → cpu); a string such as ``"cuda:1"`` or
    a :class:`torch.device` is validated and returned.
    """
    if device is None:
        if torch.cuda.is_available():
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str, torch.device or None, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be one of {_DEVICE_TYPES} (optionally with an index), got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use device=None or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was requested but MPS is not available; use device=None or 'cpu'")
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(f"device must be one of {_DEVICE_TYPES}, got {device!r}")
    return dev


class Timer:
    """Wall-clock timer: ``with Timer() as t: ...`` then ``t.seconds``."""

    def __init__(self) -> None:
        self.seconds: float = 0.0
        self._start: float | None = None

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        self.seconds = time.perf_counter() - self._start

    def __repr__(self) -> str:
        return f"Timer({self.seconds:.3f} s)"


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Store ``value`` under ``name`` for the book's prose (myst-nb ``glue``).

    Outside a Jupyter Book build (Colab, a plain script) myst-nb may be missing: the value is
    then simply returned, so notebooks run everywhere.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - depends on the environment
        return value
    _glue(name, value, display=display)
    return value


def num_threads_hint() -> int:
    """Number of intra-op threads torch uses (handy in timing tables)."""
    return torch.get_num_threads()


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
