r"""Knowledge distillation: a small *student* learns from a large *teacher*'s soft predictions.

Chapter 8 of the book, after Hinton, Vinyals & Dean (2015), *Distilling the Knowledge in a
Neural Network* (building on Buciluǎ et al. 2006, *Model Compression*). The teacher's
probabilities over *all* classes ("this 7 looks a bit like a 1, nothing like a 0") carry far
more information per example than the one-hot label; softening them with a temperature
:math:`T > 1` exposes that "dark knowledge".

With student logits :math:`z_s`, teacher logits :math:`z_t`, label :math:`y`,
:math:`p^{T}(z) = \operatorname{softmax}(z / T)` and :math:`\alpha \in [0, 1]`, the loss is
(book Eq. (8.1))

.. math::

    \mathcal{L}_{\text{KD}} = \alpha \, T^2 \, \mathrm{KL}\big(p^{T}(z_t) \,\|\, p^{T}(z_s)\big)
        + (1 - \alpha) \, \mathrm{CE}\big(z_s, y\big).

Everything here is a plain ``nn.Module`` or function: drop :class:`DistillationLoss` into your
own loop, call :func:`distill_step` once per batch, or let :func:`distill` run whole epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from tlcourse.checks import (
    check_choice,
    check_finite,
    check_int,
    check_labels,
    check_positive,
    check_probability,
    check_tensor,
)

if TYPE_CHECKING:
    from tlcourse.train import History

__all__ = [
    "distillation_loss",
    "DistillationLoss",
    "distill_step",
    "distill",
    "distill_training_step",
    "soft_and_hard",
    "teacher_logits",
]


def _check_logits(student_logits: Any, teacher_logits: Any) -> None:
    check_tensor("student_logits", student_logits, ndim=2, dtype="float")
    check_tensor("teacher_logits", teacher_logits, ndim=2, dtype="float")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape (batch, num_classes), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if len(student_logits) == 0:
        raise ValueError("student_logits is an empty batch: the loss is a mean over examples (NaN for none)")
    check_finite("student_logits", student_logits)
    check_finite("teacher_logits", teacher_logits)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    r"""Hinton et al. (2015) distillation loss, book Eq. (8.1).

    ``alpha * T**2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, y)``,
    with the KL divergence summed over classes and averaged over the batch.

    **Why the** :math:`T^2` **factor.** The gradient of the soft term with respect to a student
    logit is :math:`\frac{1}{T}\big(p^{T}_i(z_s) - p^{T}_i(z_t)\big)`. For a large temperature
    the softened probabilities are close to uniform, :math:`p^{T}_i(z) \approx (1 + z_i/T)/K`
    (for zero-mean logits), so the difference is about :math:`(z_{s,i} - z_{t,i})/(K T)` and the
    gradient shrinks like :math:`1/T^2`. Multiplying by :math:`T^2` keeps the soft term's
    gradients on the same scale whatever the temperature, so changing :math:`T` does not secretly
    change the balance set by :math:`\alpha` against the hard-label cross-entropy (whose
    gradients do not depend on :math:`T`).

    Args:
        student_logits: ``(N, K)`` raw scores of the student (gradients flow into them).
        teacher_logits: ``(N, K)`` raw scores of the teacher; detached here, the teacher is fixed.
        targets: ``(N,)`` integer class labels; may be ``None`` only when ``alpha == 1``
            (pure distillation, e.g. on unlabelled transfer data).
        temperature: softening temperature :math:`T > 0` (Hinton et al. use 1–20; 2–8 is typical).
        alpha: weight of the soft (teacher) term in ``[0, 1]``; ``alpha=0`` is plain cross-entropy.

    Returns:
        A scalar tensor.
    """
    _check_logits(student_logits, teacher_logits)
    temperature = check_positive("temperature", temperature)
    alpha = check_probability("alpha", alpha)
    if targets is None:
        if alpha < 1:
            raise ValueError("targets (the hard labels) are required unless alpha == 1 (pure distillation)")
    else:
        check_labels("targets", targets, num_classes=student_logits.shape[1])
        if len(targets) != len(student_logits):
            raise ValueError(
                f"targets and student_logits must have the same length, got {len(targets)} and {len(student_logits)}"
            )
    soft, hard = soft_and_hard(student_logits, teacher_logits, targets if alpha < 1 else None, temperature)
    if alpha == 1:
        return alpha * soft
    return alpha * soft + (1 - alpha) * hard


def soft_and_hard(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None, temperature: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The two terms of Eq. (8.1), unchecked: ``T² KL(p_t^T ‖ p_s^T)`` and ``CE(z_s, y)`` (``None`` without ``y``)."""
    teacher_logits = teacher_logits.detach()
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    # KL(p_t || p_s) = sum_k p_t (log p_t - log p_s); "batchmean" = sum over classes, mean over batch.
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature**2
    hard = F.cross_entropy(student_logits, targets) if targets is not None else None
    return soft, hard


class DistillationLoss(nn.Module):
    """Knowledge-distillation loss as a module (book Eq. (8.1); Hinton et al. 2015).

    ``loss = DistillationLoss(temperature=4, alpha=0.9)`` then
    ``loss(student_logits, teacher_logits, targets)``. After each call, ``last`` holds the two
    terms as floats (``{"soft": ..., "hard": ...}``, the soft one already scaled by :math:`T^2`)
    for logging. See :func:`distillation_loss` for the maths and why the :math:`T^2` factor is
    there.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.alpha = check_probability("alpha", alpha)
        self.last: dict[str, float] = {}

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = distillation_loss(
            student_logits, teacher_logits, targets, temperature=self.temperature, alpha=self.alpha
        )
        with torch.no_grad():
            soft = distillation_loss(student_logits, teacher_logits, None, temperature=self.temperature, alpha=1.0)
            self.last = {"soft": float(soft)}
            if targets is not None:
                self.last["hard"] = float(F.cross_entropy(student_logits, targets))
        return loss

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


def _to_device(x: Any, device: torch.device) -> Any:
    from tlcourse.train.loaders import to_device

    if not isinstance(x, (torch.Tensor, Mapping)):
        raise TypeError(f"inputs must be a Tensor or a dict of Tensors, got {type(x).__name__}")
    return to_device(x, device)


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    from tlcourse.train.classification import forward_logits

    return forward_logits(model, inputs)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def distill_step(
    student: nn.Module,
    teacher: nn.Module | None,
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
    targets: torch.Tensor | None,
    optimizer: torch.optim.Optimizer,
    loss_fn: DistillationLoss | Callable[..., torch.Tensor],
    *,
    teacher_logits: torch.Tensor | None = None,
) -> dict[str, float]:
    """One optimisation step of the student on one batch; use it inside your own loop.

    The teacher runs in ``eval`` mode under ``torch.no_grad`` (it is never updated); the student
    is put in ``train`` mode. Pass precomputed ``teacher_logits`` (and ``teacher=None``) to skip
    the teacher's forward pass, e.g. when they were cached with :func:`teacher_logits`.

    Inputs and targets are moved to the student's device. Returns ``{"loss", "accuracy"}`` (plus
    the soft/hard terms when ``loss_fn`` is a :class:`DistillationLoss`) as Python floats.
    Raises ``ValueError`` on a NaN/inf loss instead of silently corrupting the weights.
    """
    if not isinstance(student, nn.Module):
        raise TypeError(f"student must be a torch.nn.Module, got {type(student).__name__}")
    if teacher is None and teacher_logits is None:
        raise ValueError("give either a teacher module or precomputed teacher_logits")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module or None, got {type(teacher).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    device = _device_of(student)
    inputs = _to_device(inputs, device)
    if targets is not None:
        targets = targets.to(device, non_blocking=True)
    if teacher_logits is None:
        assert teacher is not None
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            teacher_logits = _forward(teacher, inputs)
        teacher.train(was_training)
    teacher_logits = teacher_logits.to(device, non_blocking=True)

    student.train()
    optimizer.zero_grad(set_to_none=True)
    student_logits = _forward(student, inputs)
    loss = loss_fn(student_logits, teacher_logits, targets)
    if not torch.isfinite(loss):
        raise ValueError(
            f"the distillation loss is {float(loss.detach())}; lower the learning rate or check the inputs"
        )
    loss.backward()
    optimizer.step()
    out = {"loss": float(loss.detach())}
    if targets is not None:
        out["accuracy"] = float((student_logits.detach().argmax(1) == targets).float().mean())
    if isinstance(loss_fn, DistillationLoss):
        out.update(loss_fn.last)
    return out


@torch.no_grad()
def teacher_logits(
    teacher: nn.Module, data: Dataset | DataLoader, *, batch_size: int = 256, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the fixed teacher once over ``data`` (in order) and return ``(inputs, labels, logits)``.

    Caching the teacher's logits makes each distillation epoch cost only the student's forward
    and backward passes, and lets several students (a temperature sweep, several seeds) share
    one teacher pass. Only valid when the inputs are deterministic (no random augmentation):
    with augmentation the teacher must see the same augmented batch as the student, so use
    :func:`distill_step` with the teacher instead.
    """
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    dev = torch.device(device) if device is not None else _device_of(teacher)
    was_training = teacher.training
    teacher.eval()
    xs, ys = _stack(data, batch_size)
    zs = [teacher(xs[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(xs), batch_size)]
    teacher.train(was_training)
    return xs, ys, torch.cat(zs)


def _stack(data: Dataset | DataLoader, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(inputs, labels)`` of ``data`` as two tensors, in order."""
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    xs, ys = [], []
    for x, y in loader:
        if not isinstance(x, torch.Tensor):
            raise TypeError("cached distillation needs tensor inputs; run distill_step with the teacher instead")
        xs.append(x)
        ys.append(torch.as_tensor(y))
    if not xs:
        raise ValueError("data is empty: expected at least one example")
    return torch.cat(xs), torch.cat(ys)


def _distill_loader(student: nn.Module, teacher: nn.Module | None, train_data: Dataset, teacher_outputs: Any,
                    cache_teacher: bool, batch_size: int, seed: int | None, dev: torch.device) -> tuple[Any, bool]:
    """The training batches, ``(x, y, teacher logits)`` when cached, else ``(x, y)``."""
    from tlcourse.train.loaders import make_loader

    cached = teacher_outputs is not None or cache_teacher
    if teacher_outputs is not None:
        check_tensor("teacher_outputs", teacher_outputs, ndim=2, dtype="float")
        xs, ys = _stack(train_data, 1024)
        if len(teacher_outputs) != len(xs):
            raise ValueError(
                f"teacher_outputs must hold one row per example of train_data ({len(xs)}), got {len(teacher_outputs)}"
            )
        data: Dataset = TensorDataset(xs, ys, teacher_outputs.detach().float().cpu())
    elif cache_teacher:
        assert teacher is not None
        data = TensorDataset(*teacher_logits(teacher.to(dev), train_data, device=dev))
    else:
        data = train_data
    generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.initial_seed() % 2**31))
    return make_loader(data, batch_size, True, dev, generator=generator), cached


def distill_training_step(net: nn.Module, teacher: nn.Module | None, temperature: float, alpha: float,
                          cached: bool) -> Callable[[Any], dict[str, Any]]:
    """The engine step of :func:`distill`: Eq. (8.1) on one batch, teacher logits cached or computed."""
    from tlcourse.train.classification import forward_logits

    checked = [False]

    def step(batch: Any) -> dict[str, Any]:
        x, y, z = batch if cached else (*batch, None)
        if z is None:
            with torch.no_grad():
                z = forward_logits(teacher, x)
        logits = forward_logits(net, x)
        if not checked[0]:  # once: validation reads the labels, which waits for the device
            distillation_loss(logits.detach(), z, y, temperature=temperature, alpha=alpha)
            checked[0] = True
        soft, hard = soft_and_hard(logits, z, y, temperature)
        loss = alpha * soft if alpha == 1 else alpha * soft + (1 - alpha) * hard
        return {"loss": loss, "accuracy": (logits.detach().argmax(1) == y).float().mean(), "soft": soft.detach(),
                "hard": hard.detach(), "batch_size": len(y)}

    return step


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    train_data: Dataset,
    *,
    epochs: int,
    temperature: float = 4.0,
    alpha: float = 0.9,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    batch_size: int = 64,
    cache_teacher: bool = True,
    teacher_outputs: torch.Tensor | None = None,
    val_data: Dataset | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool = False,
    **engine_options: Any,
) -> History:
    """Train ``student`` to imitate ``teacher`` on ``train_data`` for ``epochs`` epochs.

    One step is Eq. (8.1) on a batch (AdamW by default; ``scheduler`` is a learning-rate
    scheduler or a factory ``optimizer → scheduler``, stepped every epoch or every step as
    ``scheduler_interval`` says, as in :func:`tlcourse.train.fit`), run by the engine
    (:class:`~tlcourse.train.engine.Engine`; ``engine_options`` such as ``amp``,
    ``channels_last``, ``compile``, ``accumulate``, ``grad_clip``, ``sync_batchnorm``,
    ``checkpoint`` and ``resume`` go to it). With ``alpha=0`` it is plain cross-entropy training
    in the very same loop: the fair "student trained alone" baseline. With
    ``cache_teacher=True`` the teacher's logits are computed once (:func:`teacher_logits`); pass
    ``teacher_outputs`` (logits for ``train_data`` in order, e.g. shared by a sweep) and
    ``teacher=None`` to skip even that. Set ``cache_teacher=False`` when ``train_data`` applies
    random augmentation, so the teacher sees every augmented batch. Under ``torchrun`` the
    student is wrapped in DDP and each process reads its slice of every global batch.

    Returns a :class:`tlcourse.train.History` with, per epoch, ``train_loss``,
    ``train_accuracy``, the two loss terms ``soft`` and ``hard`` and, with ``val_data``,
    ``val_loss`` and ``val_accuracy``.
    """
    from tlcourse.train import Engine, evaluate
    from tlcourse.train.classification import TRAIN_NAMES
    from tlcourse.train.optimizers import make_scheduler
    from tlcourse.utils import get_device, seed_everything

    if not isinstance(student, nn.Module):
        raise TypeError(f"student must be a torch.nn.Module, got {type(student).__name__}")
    if teacher is None and teacher_outputs is None:
        raise ValueError("give a teacher module or its precomputed teacher_outputs")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module or None, got {type(teacher).__name__}")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_positive("lr", lr)
    check_positive("temperature", temperature)
    check_probability("alpha", alpha)
    check_choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
    if len(train_data) == 0:  # type: ignore[arg-type]
        raise ValueError("train_data is empty: expected at least one example")
    if seed is not None:
        seed_everything(seed)
    dev = get_device(device)
    student.to(dev)
    if optimizer is None:
        optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    sched = make_scheduler(scheduler, optimizer)
    loader, cached = _distill_loader(student, teacher, train_data, teacher_outputs, cache_teacher, batch_size, seed,
                                     dev)
    modules = {"student": student} if cached else {"student": student, "teacher": teacher}
    engine = Engine(modules, {"optimizer": optimizer}, schedulers={"scheduler": sched} if sched else None,
                    scheduler_interval=scheduler_interval, frozen=("teacher",), device=dev, desc="distill",
                    rename=TRAIN_NAMES, progress=progress, **engine_options)
    net = engine.prepare(student, ddp=True)

    def validate(epoch: int) -> dict[str, float]:
        val = evaluate(net, val_data, device=dev)
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    history = engine.run(loader, distill_training_step(net, teacher, temperature, alpha, cached), epochs=epochs,
                         at_epoch_end=validate if val_data is not None else None)
    student.eval()
    return history
