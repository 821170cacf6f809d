"""The gradient reversal layer and the schedules of Ganin et al. (2016).

DANN trains one feature extractor against a domain discriminator with a single backward pass:
between the two sits a layer that is the identity on the way forward and multiplies the gradient
by ``-λ`` on the way back (Ganin et al., 2016, Eq. 12–13; book Eq. (6.9)). The discriminator
therefore *descends* its loss while the features *ascend* it.

The paper ramps ``λ`` from 0 to 1 so that the noisy early discriminator does not wreck the
features (``λ_p = 2 / (1 + exp(-γ p)) - 1``, ``γ = 10``) and anneals the learning rate as
``μ_p = μ_0 / (1 + α p)^β`` with ``α = 10``, ``β = 0.75``, where ``p ∈ [0, 1]`` is the training
progress.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tlcourse.checks import check_int, check_non_negative, check_positive, check_tensor

__all__ = [
    "GradientReversalFunction",
    "grad_reverse",
    "GradientReversal",
    "dann_lambda",
    "dann_lr",
    "dann_lr_scheduler",
]


def _check_progress(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"p must be a number (training progress in [0, 1]), got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be the training progress in [0, 1], got {p}")
    return float(p)


class GradientReversalFunction(torch.autograd.Function):
    """``forward(x, λ) = x``; ``backward(g) = -λ g`` (Ganin et al., 2016, Eq. 12–13)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambda_: float) -> torch.Tensor:  # type: ignore[override]
        """Return ``x`` unchanged and remember ``λ`` for the backward pass."""
        ctx.lambda_ = lambda_
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        """Multiply the incoming gradient by ``-λ`` (no gradient for ``λ``)."""
        return -ctx.lambda_ * grad_output, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """Identity on ``x`` whose gradient is multiplied by ``-lambda_`` (book Eq. (6.9))."""
    check_tensor("x", x, dtype="float")
    check_non_negative("lambda_", lambda_)
    return GradientReversalFunction.apply(x, float(lambda_))


class GradientReversal(nn.Module):
    r"""Module form of :func:`grad_reverse`; ``lambda_`` may be changed between steps.

    Args:
        lambda\_: the gradient scale ``λ >= 0`` (0 blocks the gradient, 1 reverses it as is).
    """

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = float(check_non_negative("lambda_", lambda_))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:g}"


def dann_lambda(p: float, gamma: float = 10.0) -> float:
    """Adaptation weight ``λ_p = 2 / (1 + exp(-γ p)) - 1`` (Ganin et al., 2016, §5.2.2; book Eq. (6.10)).

    Rises from 0 at ``p = 0`` to ``tanh(γ/2) ≈ 1`` at ``p = 1``.

    Args:
        p: training progress in [0, 1] (current step / total steps).
        gamma: steepness ``γ > 0`` (10 in the paper).
    """
    p = _check_progress(p)
    check_positive("gamma", gamma)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr(p: float, lr0: float = 0.01, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Annealed learning rate ``μ_p = μ_0 / (1 + α p)^β`` (Ganin et al., 2016, §5.2.2; book Eq. (6.10))."""
    p = _check_progress(p)
    check_positive("lr0", lr0)
    check_non_negative("alpha", alpha)
    check_non_negative("beta", beta)
    return lr0 / (1.0 + alpha * p) ** beta


def dann_lr_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, alpha: float = 10.0, beta: float = 0.75
) -> torch.optim.lr_scheduler.LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` applying :func:`dann_lr` per step.

    Each parameter group keeps its own base rate ``μ_0``; call ``scheduler.step()`` after every
    optimizer step.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    total_steps = check_int("total_steps", total_steps, minimum=1)
    check_non_negative("alpha", alpha)
    check_non_negative("beta", beta)

    def factor(step: int) -> float:
        p = min(step / total_steps, 1.0)
        return 1.0 / (1.0 + alpha * p) ** beta

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
