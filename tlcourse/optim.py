"""Cross-entropy and three optimisers written out by hand, for chapter 2 of the book.

These are *teaching* implementations: each function is one equation of chapter 2 of the book
(``book/02_math``), operates on plain tensors, never mutates its inputs and returns the new
values. They are tested against PyTorch (``torch.nn.functional.cross_entropy``, autograd,
``torch.optim.SGD`` and ``torch.optim.AdamW``), which is what you should use in real training.

* :func:`softmax`, :func:`cross_entropy` — Eq. (eq-ce) in chapter 2:
  ``p = softmax(z)``, ``ℓ(z, y) = −log p_y``, averaged over the batch (the empirical risk,
  Eq. (eq-erm)).
* :func:`cross_entropy_grad` — Eq. (eq-ce-grad): ``∂ℓ̄/∂z = (softmax(z) − onehot(y)) / N``.
* :func:`sgd_step` — Eq. (eq-sgd): ``θ ← θ − η g``.
* :func:`sgd_momentum_step` — Eq. (eq-momentum), PyTorch's convention
  ``v ← μ v + g``, ``θ ← θ − η v`` (Nesterov: ``θ ← θ − η (g + μ v)``).
* :func:`adamw_step` — Eq. (eq-adamw), Adam (Kingma & Ba, 2015) with bias correction and
  decoupled weight decay (Loshchilov & Hutter, 2019), in PyTorch's parametrisation.

A step function takes one parameter tensor, its gradient and the optimiser state of that
tensor; to update a model, loop over its parameters::

    state = {name: None for name, _ in model.named_parameters()}
    ...
    loss.backward()
    with torch.no_grad():
        for name, p in model.named_parameters():
            new, state[name] = sgd_momentum_step(p, p.grad, state[name], lr=0.1, momentum=0.9)
            p.copy_(new)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from tlcourse.checks import check_labels, check_non_negative, check_positive, check_tensor

__all__ = [
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_grad",
    "sgd_step",
    "sgd_momentum_step",
    "AdamState",
    "adamw_step",
]


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------------------------


def _check_logits(logits: Any) -> torch.Tensor:
    check_tensor("logits", logits, ndim=2, dtype="float")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be a non-empty (N, K) matrix, got shape {tuple(logits.shape)}")
    return logits


def _check_logits_labels(logits: Any, labels: Any) -> None:
    _check_logits(logits)
    check_labels("labels", labels, num_classes=logits.shape[1])
    if len(labels) != len(logits):
        raise ValueError(f"logits and labels must have the same length, got {len(logits)} and {len(labels)}")


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log softmax(z)`` over the last dimension, computed stably as ``z − logsumexp(z)``.

    Subtracting the row maximum before exponentiating changes nothing mathematically
    (softmax is invariant to adding a constant to every logit) but keeps ``exp`` from
    overflowing for large logits.
    """
    check_tensor("logits", logits, dtype="float")
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last dimension, got shape {tuple(logits.shape)}")
    shifted = logits - logits.max(dim=-1, keepdim=True).values.detach()
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """``softmax(z)_k = exp(z_k) / Σ_j exp(z_j)`` over the last dimension (Eq. (eq-ce), chapter 2)."""
    return log_softmax(logits).exp()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy ``(1/N) Σ_i −log softmax(z_i)_{y_i}`` (Eq. (eq-ce), chapter 2).

    Equals ``torch.nn.functional.cross_entropy(logits, labels)``: the empirical risk
    (Eq. (eq-erm)) of the log-loss on the batch.

    Args:
        logits: ``(N, K)`` raw scores.
        labels: ``(N,)`` integer classes in ``[0, K)``.
    """
    _check_logits_labels(logits, labels)
    return -log_softmax(logits).gather(1, labels.long()[:, None]).mean()


def cross_entropy_grad(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`cross_entropy` with respect to the logits, by hand (Eq. (eq-ce-grad)).

    ``∂/∂z_i [(1/N) Σ_n ℓ(z_n, y_n)] = (softmax(z_i) − onehot(y_i)) / N``: the predicted
    probabilities minus the target distribution, so the gradient is bounded and vanishes exactly
    when the model puts probability one on the true class.
    """
    _check_logits_labels(logits, labels)
    p = softmax(logits.detach())
    return (p - F.one_hot(labels.long(), logits.shape[1]).to(p.dtype)) / len(logits)


# --------------------------------------------------------------------------------------------
# Optimisers: one step on one tensor
# --------------------------------------------------------------------------------------------


def _check_param_grad(param: Any, grad: Any) -> None:
    check_tensor("param", param, dtype="float")
    check_tensor("grad", grad, dtype="float")
    if param.shape != grad.shape:
        raise ValueError(f"param and grad must have the same shape, got {tuple(param.shape)} and {tuple(grad.shape)}")


def _check_unit_interval(name: str, value: Any) -> float:
    """``value`` must be a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def sgd_step(param: torch.Tensor, grad: torch.Tensor, lr: float, weight_decay: float = 0.0) -> torch.Tensor:
    """One (stochastic) gradient-descent step ``θ ← θ − η (g + λθ)`` (Eq. (eq-sgd), chapter 2).

    With the full-batch gradient this is gradient descent; with a mini-batch gradient it is SGD.
    ``weight_decay`` λ adds the gradient of ``λ/2 ‖θ‖²`` (coupled L2, as ``torch.optim.SGD``).
    Returns the new parameter; ``param`` is not modified.
    """
    _check_param_grad(param, grad)
    check_positive("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    param, grad = param.detach(), grad.detach()
    if weight_decay:
        grad = grad + weight_decay * param
    return param - lr * grad


def sgd_momentum_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    velocity: torch.Tensor | None,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of SGD with (heavy-ball or Nesterov) momentum (Eq. (eq-momentum), chapter 2).

    PyTorch's convention (``torch.optim.SGD`` with ``dampening=0``)::

        v ← μ v + g          (v = g on the first step, i.e. when velocity is None)
        θ ← θ − η v          (Nesterov: θ ← θ − η (g + μ v))

    Sutskever et al. (2013) write ``v ← μ v − η g; θ ← θ + v`` instead; with a constant rate the
    two are the same sequence of parameters (their ``v`` is ``−η`` times this one).

    Args:
        param, grad: the parameter and its gradient (same shape).
        velocity: the momentum buffer ``v`` returned by the previous step, or ``None`` at first.
        lr: learning rate ``η > 0``.
        momentum: ``μ`` in ``[0, 1)``; ``0`` gives plain SGD.
        nesterov: use Nesterov's look-ahead form.
        weight_decay: coupled L2 coefficient λ ≥ 0 (``g ← g + λθ`` first).

    Returns:
        ``(new_param, new_velocity)``; the inputs are not modified.
    """
    _check_param_grad(param, grad)
    check_positive("lr", lr)
    momentum = _check_unit_interval("momentum", momentum)
    check_non_negative("weight_decay", weight_decay)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
    param, grad = param.detach(), grad.detach()
    if weight_decay:
        grad = grad + weight_decay * param
    if velocity is None:
        velocity = grad.clone()
    else:
        check_tensor("velocity", velocity, dtype="float")
        if velocity.shape != param.shape:
            raise ValueError(f"velocity must have the shape of param {tuple(param.shape)}, got {tuple(velocity.shape)}")
        velocity = momentum * velocity.detach() + grad
    direction = grad + momentum * velocity if nesterov else velocity
    return param - lr * direction, velocity


class AdamState(NamedTuple):
    """Per-tensor state of Adam/AdamW: the step count and the two moment estimates."""

    step: int
    exp_avg: torch.Tensor  # m: running mean of the gradients
    exp_avg_sq: torch.Tensor  # v: running mean of the squared gradients

    @classmethod
    def zeros_like(cls, param: torch.Tensor) -> AdamState:
        """The initial state ``(0, 0, 0)`` for ``param``."""
        return cls(0, torch.zeros_like(param), torch.zeros_like(param))


def adamw_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: AdamState | None,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> tuple[torch.Tensor, AdamState]:
    """One AdamW step (Eq. (eq-adamw), chapter 2; Loshchilov & Hutter, 2019, Alg. 2).

    With ``t`` the new step count::

        m ← β₁ m + (1 − β₁) g                    first moment (momentum)
        v ← β₂ v + (1 − β₂) g²                   second moment (per-coordinate scale)
        m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   bias correction (m, v start at 0)
        θ ← θ − η λ θ − η m̂ / (√v̂ + ε)          decoupled weight decay, then the Adam step

    The decay ``η λ θ`` acts on the weights directly instead of being added to ``g`` (which is
    what Adam with L2 regularisation does, and there the decay gets divided by ``√v̂``). This is
    PyTorch's parametrisation, where the decay is multiplied by the learning rate; the paper
    writes ``θ ← θ − η_t (α m̂/(√v̂ + ε) + λ θ)`` with a separate schedule multiplier ``η_t``.

    Args:
        param, grad: the parameter and its gradient (same shape).
        state: the :class:`AdamState` returned by the previous step, or ``None`` at first.
        lr: learning rate ``η > 0``.
        betas: ``(β₁, β₂)``, each in ``[0, 1)``.
        eps: ``ε > 0`` added to the denominator.
        weight_decay: decoupled decay ``λ ≥ 0``.

    Returns:
        ``(new_param, new_state)``; the inputs are not modified.
    """
    _check_param_grad(param, grad)
    check_positive("lr", lr)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    beta1 = _check_unit_interval("betas[0]", betas[0])
    beta2 = _check_unit_interval("betas[1]", betas[1])
    check_positive("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    if state is None:
        state = AdamState.zeros_like(param)
    elif not isinstance(state, AdamState):
        raise TypeError(f"state must be an AdamState or None, got {type(state).__name__}")
    elif state.exp_avg.shape != param.shape or state.exp_avg_sq.shape != param.shape:
        raise ValueError(f"state moments must have the shape of param {tuple(param.shape)}")
    param, grad = param.detach(), grad.detach()
    t = state.step + 1
    m = beta1 * state.exp_avg.detach() + (1 - beta1) * grad
    v = beta2 * state.exp_avg_sq.detach() + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    new_param = param * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps)
    return new_param, AdamState(t, m, v)
