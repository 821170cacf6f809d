"""tlcourse.optim: hand-written cross-entropy and optimiser steps against PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.optim import (
    AdamState,
    adamw_step,
    cross_entropy,
    cross_entropy_grad,
    log_softmax,
    sgd_momentum_step,
    sgd_step,
    softmax,
)

TOL = 1e-6


def _batch(seed: int = 0, n: int = 16, k: int = 5, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * scale, torch.randint(k, (n,), generator=g)


# ------------------------------------------------------------------ softmax cross-entropy


def test_softmax_matches_torch_and_sums_to_one() -> None:
    z, _ = _batch()
    p = softmax(z)
    torch.testing.assert_close(p, torch.softmax(z, dim=-1))
    torch.testing.assert_close(p.sum(1), torch.ones(len(z)))
    torch.testing.assert_close(log_softmax(z), torch.log_softmax(z, dim=-1))


def test_softmax_is_stable_for_huge_logits() -> None:
    z = torch.tensor([[1000.0, 0.0, -1000.0], [1e4, 1e4, 0.0]])
    p = softmax(z)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p, torch.softmax(z, dim=-1))
    # Softmax is invariant to adding a constant to every logit.
    torch.testing.assert_close(softmax(z + 123.0), p)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_entropy_matches_torch(seed: int) -> None:
    z, y = _batch(seed)
    torch.testing.assert_close(cross_entropy(z, y), F.cross_entropy(z, y))


def test_cross_entropy_extremes() -> None:
    n, k = 8, 10
    y = torch.arange(n) % k
    # Uniform logits: −log(1/K) = log K.
    assert cross_entropy(torch.zeros(n, k), y).item() == pytest.approx(torch.log(torch.tensor(float(k))).item())
    # A confident correct prediction costs almost nothing, a confident wrong one a lot.
    right = F.one_hot(y, k).float() * 50
    assert cross_entropy(right, y).item() < 1e-6
    assert cross_entropy(right, (y + 1) % k).item() == pytest.approx(50.0, rel=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_entropy_grad_matches_autograd(seed: int) -> None:
    z, y = _batch(seed)
    z = z.double().requires_grad_(True)
    F.cross_entropy(z, y).backward()
    torch.testing.assert_close(cross_entropy_grad(z, y), z.grad, atol=1e-12, rtol=0)
    # Each row of the gradient sums to zero (probabilities minus a one-hot vector).
    torch.testing.assert_close(cross_entropy_grad(z, y).sum(1), torch.zeros(len(z), dtype=z.dtype))


def test_cross_entropy_is_differentiable() -> None:
    z, y = _batch(3)
    z.requires_grad_(True)
    cross_entropy(z, y).backward()
    torch.testing.assert_close(z.grad, cross_entropy_grad(z, y))


def test_cross_entropy_bad_input() -> None:
    z, y = _batch()
    with pytest.raises(ValueError, match="labels"):
        cross_entropy(z, y + 10)
    with pytest.raises(ValueError, match="labels"):
        cross_entropy(z, y - 10)
    with pytest.raises(TypeError, match="labels"):
        cross_entropy(z, y.float())
    with pytest.raises(ValueError, match="same length"):
        cross_entropy_grad(z, y[:-1])
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(z[0], y)
    with pytest.raises(TypeError, match="logits"):
        cross_entropy(z.long(), y)
    with pytest.raises(ValueError, match="logits"):
        cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match="logits"):
        softmax([1.0, 2.0])  # type: ignore[arg-type]


# ------------------------------------------------------------------ optimiser steps


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + seed)
    return torch.randn(32, 6, generator=g), torch.randint(3, (32,), generator=g)


def _compare(make_torch_opt, hand_step, steps: int = 6) -> float:
    """Run ``steps`` steps of a torch optimiser and of a hand-written one from the same start.

    Each step uses a different mini-batch and the gradient at the *current* parameters of each
    run, so the two trajectories only agree if every update rule agrees. Returns the largest
    absolute difference seen over all steps and parameters.
    """
    ref, hand = _model(), _model()
    opt = make_torch_opt(ref.parameters())
    states: dict[str, object] = {name: None for name, _ in hand.named_parameters()}
    worst = 0.0
    for step in range(steps):
        x, y = _data(step)
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
        hand.zero_grad()
        F.cross_entropy(hand(x), y).backward()
        with torch.no_grad():
            for name, p in hand.named_parameters():
                new, states[name] = hand_step(p, p.grad, states[name])
                p.copy_(new)
        for (_, a), (_, b) in zip(ref.named_parameters(), hand.named_parameters()):
            worst = max(worst, (a - b).abs().max().item())
    # The parameters moved (the comparison is not trivially between two untouched models).
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(ref.parameters(), _model().parameters()))
    return worst


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_step_matches_torch(weight_decay: float) -> None:
    worst = _compare(
        lambda ps: torch.optim.SGD(ps, lr=0.3, weight_decay=weight_decay),
        lambda p, g, s: (sgd_step(p, g, lr=0.3, weight_decay=weight_decay), None),
    )
    assert worst < TOL


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_momentum_step_matches_torch(nesterov: bool, weight_decay: float) -> None:
    worst = _compare(
        lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay),
        lambda p, g, s: sgd_momentum_step(p, g, s, lr=0.2, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay),
    )
    assert worst < TOL


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
def test_adamw_step_matches_torch(weight_decay: float, betas: tuple[float, float]) -> None:
    worst = _compare(
        lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=betas, eps=1e-8, weight_decay=weight_decay),
        lambda p, g, s: adamw_step(p, g, s, lr=0.01, betas=betas, eps=1e-8, weight_decay=weight_decay),
        steps=8,
    )
    assert worst < TOL


def test_adamw_differs_from_adam_with_l2() -> None:
    """Decoupled decay is not L2 regularisation: AdamW ≠ Adam(weight_decay) (Loshchilov & Hutter)."""
    adam_l2 = _compare(
        lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1),
        lambda p, g, s: adamw_step(p, g, s, lr=0.01, weight_decay=0.1),
    )
    assert adam_l2 > 1e-4


def test_momentum_zero_is_plain_sgd() -> None:
    p, g = torch.randn(4, 3), torch.randn(4, 3)
    new, v = sgd_momentum_step(p, g, None, lr=0.1, momentum=0.0)
    torch.testing.assert_close(new, sgd_step(p, g, lr=0.1))
    new2, _ = sgd_momentum_step(new, g, v, lr=0.1, momentum=0.0)
    torch.testing.assert_close(new2, sgd_step(new, g, lr=0.1))


def test_first_adam_step_has_size_lr() -> None:
    """Bias correction: the first step moves every coordinate by ≈ lr·sign(g), whatever |g|."""
    p = torch.zeros(5)
    g = torch.tensor([1e-3, -0.5, 2.0, -40.0, 1e3])
    new, state = adamw_step(p, g, None, lr=0.01, weight_decay=0.0)
    torch.testing.assert_close(new, -0.01 * g.sign(), atol=1e-6, rtol=1e-4)
    assert state.step == 1


def test_steps_do_not_mutate_inputs() -> None:
    p, g = torch.randn(3), torch.randn(3)
    p0, g0 = p.clone(), g.clone()
    sgd_step(p, g, lr=0.1, weight_decay=0.1)
    _, v = sgd_momentum_step(p, g, None, lr=0.1)
    v0 = v.clone()
    sgd_momentum_step(p, g, v, lr=0.1)
    _, s = adamw_step(p, g, None)
    s0 = AdamState(s.step, s.exp_avg.clone(), s.exp_avg_sq.clone())
    adamw_step(p, g, s)
    torch.testing.assert_close(p, p0)
    torch.testing.assert_close(g, g0)
    torch.testing.assert_close(v, v0)
    torch.testing.assert_close(s.exp_avg, s0.exp_avg)
    assert s.step == s0.step


def test_optimiser_bad_input() -> None:
    p, g = torch.randn(3), torch.randn(3)
    for bad_lr in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            sgd_step(p, g, lr=bad_lr)
    with pytest.raises(TypeError, match="lr"):
        sgd_step(p, g, lr="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="param and grad"):
        sgd_step(p, torch.randn(4), lr=0.1)
    with pytest.raises(TypeError, match="grad"):
        sgd_step(p, [1.0, 2.0, 3.0], lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight_decay"):
        sgd_step(p, g, lr=0.1, weight_decay=-0.1)
    for bad_mu in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="momentum"):
            sgd_momentum_step(p, g, None, lr=0.1, momentum=bad_mu)
    with pytest.raises(ValueError, match="velocity"):
        sgd_momentum_step(p, g, torch.zeros(4), lr=0.1)
    with pytest.raises(TypeError, match="nesterov"):
        sgd_momentum_step(p, g, None, lr=0.1, nesterov=1)  # type: ignore[arg-type]
    for bad_betas in ((1.0, 0.999), (0.9, 1.0), (-0.1, 0.9)):
        with pytest.raises(ValueError, match="betas"):
            adamw_step(p, g, None, betas=bad_betas)
    with pytest.raises(TypeError, match="betas"):
        adamw_step(p, g, None, betas=0.9)  # type: ignore[arg-type]
    for bad_eps in (0.0, -1e-8):
        with pytest.raises(ValueError, match="eps"):
            adamw_step(p, g, None, eps=bad_eps)
    with pytest.raises(ValueError, match="lr"):
        adamw_step(p, g, None, lr=0.0)
    with pytest.raises(TypeError, match="state"):
        adamw_step(p, g, {"step": 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state"):
        adamw_step(p, g, AdamState.zeros_like(torch.zeros(4)))
