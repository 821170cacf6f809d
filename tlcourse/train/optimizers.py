"""Default optimizers and schedulers of the loops: what ``optimizer=None`` and a factory mean."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["make_optimizer", "make_scheduler"]

OptimizerArg = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None


def make_optimizer(params: Iterable[Any], optimizer: OptimizerArg = None, lr: float = 1e-3,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``optimizer`` itself, ``optimizer(params)`` for a factory, or AdamW(lr, weight_decay) over ``params``."""
    params = list(params)
    if optimizer is None:
        if not params:
            raise ValueError("model has no trainable parameters (all requires_grad=False)")
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(params)
    raise TypeError(f"optimizer must be a torch.optim.Optimizer, a factory params -> optimizer, or None, "
                    f"got {type(optimizer).__name__}")


def make_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    """``scheduler`` itself (anything with ``step``), ``scheduler(optimizer)`` for a factory, or ``None``."""
    if scheduler is None or hasattr(scheduler, "step"):
        return scheduler
    if callable(scheduler):
        return scheduler(optimizer)
    raise TypeError(f"scheduler must be a learning-rate scheduler or a factory optimizer -> scheduler, "
                    f"got {type(scheduler).__name__}")
