"""Tests of tlcourse.distill (knowledge distillation, Hinton et al. 2015)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from tlcourse.distill import (
    DistillationLoss,
    distill,
    distill_step,
    distillation_loss,
    teacher_logits,
)


def _reference(zs: torch.Tensor, zt: torch.Tensor, y: torch.Tensor, T: float, alpha: float) -> torch.Tensor:
    """Eq. (8.1) written out with torch.nn.functional, term by term."""
    p_t = F.softmax(zt / T, dim=1)
    log_p_t = F.log_softmax(zt / T, dim=1)
    log_p_s = F.log_softmax(zs / T, dim=1)
    kl = (p_t * (log_p_t - log_p_s)).sum(dim=1).mean()
    ce = F.nll_loss(F.log_softmax(zs, dim=1), y)
    return alpha * T**2 * kl + (1 - alpha) * ce


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
def test_matches_hand_reference(T: float, alpha: float) -> None:
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(16, 7, generator=g) * 3, torch.randn(16, 7, generator=g) * 3
    y = torch.randint(0, 7, (16,), generator=g)
    got = distillation_loss(zs, zt, y, temperature=T, alpha=alpha)
    torch.testing.assert_close(got, _reference(zs, zt, y, T, alpha))
    torch.testing.assert_close(DistillationLoss(T, alpha)(zs, zt, y), got)


def test_alpha_zero_is_cross_entropy_and_kl_is_nonnegative() -> None:
    zs, zt = torch.randn(8, 5), torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    torch.testing.assert_close(distillation_loss(zs, zt, y, alpha=0.0), F.cross_entropy(zs, y))
    assert distillation_loss(zs, zt, None, alpha=1.0) >= 0


def test_zero_loss_and_zero_gradient_when_student_equals_teacher() -> None:
    zt = torch.randn(10, 4) * 5
    zs = zt.clone().requires_grad_(True)
    loss = distillation_loss(zs, zt, None, temperature=3.0, alpha=1.0)
    loss.backward()
    assert abs(float(loss.detach())) < 1e-6
    assert zs.grad is not None and zs.grad.abs().max() < 1e-6


def test_teacher_receives_no_gradient() -> None:
    zt = torch.randn(4, 3, requires_grad=True)
    zs = torch.randn(4, 3, requires_grad=True)
    distillation_loss(zs, zt, torch.tensor([0, 1, 2, 0]), alpha=0.5).backward()
    assert zt.grad is None and zs.grad is not None


def test_t_squared_keeps_gradient_scale_comparable_across_temperatures() -> None:
    g = torch.Generator().manual_seed(1)
    zt = torch.randn(64, 10, generator=g) * 2
    zs0 = torch.randn(64, 10, generator=g) * 2
    scaled, unscaled = [], []
    for T in (2.0, 5.0, 10.0, 20.0):
        zs = zs0.clone().requires_grad_(True)
        distillation_loss(zs, zt, None, temperature=T, alpha=1.0).backward()
        norm = float(zs.grad.norm())
        scaled.append(norm)
        unscaled.append(norm / T**2)  # what the gradient would be without the T^2 factor
    assert max(scaled) / min(scaled) < 2.0
    assert max(unscaled) / min(unscaled) > 50.0


def test_module_reports_terms() -> None:
    loss_fn = DistillationLoss(temperature=2.0, alpha=0.25)
    zs, zt, y = torch.randn(6, 3), torch.randn(6, 3), torch.randint(0, 3, (6,))
    loss = loss_fn(zs, zt, y)
    assert set(loss_fn.last) == {"soft", "hard"}
    assert float(loss) == pytest.approx(0.25 * loss_fn.last["soft"] + 0.75 * loss_fn.last["hard"], rel=1e-5)
    assert "temperature=2.0" in repr(loss_fn)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": "4"}, TypeError, "temperature"),
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": -0.1}, ValueError, "alpha"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, error: type, match: str) -> None:
    zs, zt, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(error, match=match):
        distillation_loss(zs, zt, y, **kwargs)
    with pytest.raises(error, match=match):
        DistillationLoss(**{"temperature": 4.0, "alpha": 0.5, **kwargs})


def test_bad_inputs() -> None:
    zs, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(zs, torch.randn(4, 5), y)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(zs, torch.randn(5, 3), y)
    with pytest.raises(ValueError, match="student_logits must have 2"):
        distillation_loss(torch.randn(4), torch.randn(4), y)
    with pytest.raises(TypeError, match="teacher_logits"):
        distillation_loss(zs, [[0.0] * 3] * 4, y)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(zs, torch.randn(4, 3), None, alpha=0.5)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(zs, torch.randn(4, 3), torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="same length"):
        distillation_loss(zs, torch.randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="targets"):
        distillation_loss(zs, torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]))


def _blobs(n: int = 400, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = centres[y] + 0.7 * torch.randn(n, 2, generator=g)
    return TensorDataset(x, y)


def _teacher(data: TensorDataset) -> nn.Module:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(teacher.parameters(), lr=0.05)
    x, y = data.tensors
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(teacher(x), y).backward()
        opt.step()
    return teacher


def test_distill_step_updates_student_only() -> None:
    data = _blobs(64)
    teacher = _teacher(data)
    teacher.train()
    student = nn.Linear(2, 3)
    before_t = [p.clone() for p in teacher.parameters()]
    before_s = student.weight.clone()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    x, y = data.tensors
    stats = distill_step(student, teacher, x, y, opt, DistillationLoss(2.0, 0.5))
    assert set(stats) >= {"loss", "accuracy", "soft", "hard"}
    assert not torch.equal(before_s, student.weight)
    assert all(torch.equal(a, b) for a, b in zip(before_t, teacher.parameters()))
    assert teacher.training  # mode restored
    with pytest.raises(ValueError, match="teacher"):
        distill_step(student, None, x, y, opt, DistillationLoss())
    with pytest.raises(TypeError, match="optimizer"):
        distill_step(student, teacher, x, y, "sgd", DistillationLoss())


def test_distill_step_rejects_nan_loss() -> None:
    student = nn.Linear(2, 3)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    x = torch.tensor([[float("nan"), 0.0]])
    with pytest.raises(ValueError, match="nan"):
        distill_step(student, None, x, torch.tensor([0]), opt, DistillationLoss(), teacher_logits=torch.zeros(1, 3))


@pytest.mark.parametrize("mode", ["cache", "live", "precomputed"])
def test_distill_makes_student_agree_with_teacher(mode: str) -> None:
    data = _blobs(400)
    teacher = _teacher(data)
    student = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    outputs = teacher_logits(teacher, data)[2] if mode == "precomputed" else None
    history = distill(
        student, None if mode == "precomputed" else teacher, data, epochs=15, temperature=2.0, alpha=1.0,
        lr=0.02, cache_teacher=mode == "cache", teacher_outputs=outputs, val_data=data, device="cpu", seed=0,
    )
    x, _ = data.tensors
    with torch.no_grad():
        agreement = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean()
    assert agreement > 0.95
    assert history["soft"][-1] < history["soft"][0]
    assert len(history["val_accuracy"]) == 15 and history["val_accuracy"][-1] > 0.9


def test_teacher_logits_and_bad_arguments() -> None:
    data = _blobs(50)
    teacher = _teacher(data)
    xs, ys, zs = teacher_logits(teacher, data, batch_size=16)
    assert xs.shape == (50, 2) and ys.shape == (50,) and zs.shape == (50, 3)
    torch.testing.assert_close(zs, teacher(data.tensors[0]).detach())
    with pytest.raises(ValueError, match="teacher"):
        distill(nn.Linear(2, 3), None, data, epochs=1)
    with pytest.raises(ValueError, match="scheduler_interval"):
        distill(nn.Linear(2, 3), teacher, data, epochs=1, scheduler_interval="batch")
    with pytest.raises(ValueError, match="teacher_outputs"):
        distill(nn.Linear(2, 3), None, data, epochs=1, teacher_outputs=zs[:10])
    with pytest.raises(ValueError, match="epochs"):
        distill(nn.Linear(2, 3), teacher, data, epochs=0)
    with pytest.raises(ValueError, match="empty"):
        distill(nn.Linear(2, 3), teacher, TensorDataset(torch.zeros(0, 2), torch.zeros(0).long()), epochs=1)


def test_alpha_zero_distill_is_plain_training_and_scheduler_steps() -> None:
    data = _blobs(200)
    teacher = _teacher(data)
    student = nn.Linear(2, 3)
    optimizer = torch.optim.AdamW(student.parameters(), lr=0.5)
    steps = 8 * 4  # 8 epochs x ceil(200 / 64) batches
    history = distill(
        student, teacher, data, epochs=8, alpha=0.0, optimizer=optimizer, batch_size=64, seed=0, device="cpu",
        scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, 0.5, total_steps=steps),
        scheduler_interval="step",
    )
    assert history["train_loss"] == pytest.approx(history["hard"])  # alpha = 0: the loss is the CE term
    assert optimizer.param_groups[0]["lr"] < 0.01  # the one-cycle schedule was stepped to its end (max 0.5)
    assert history["train_accuracy"][-1] > 0.9
