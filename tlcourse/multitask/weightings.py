"""Loss weightings with one contract: ``backward(losses, shared_parameters=None) -> weights``.

Equal weighting, homoscedastic uncertainty (Kendall et al., 2018), dynamic weight average
(Liu et al., 2019), GradNorm (Chen et al., 2018) and PCGrad (Yu et al., 2020); see
:mod:`tlcourse.multitask` for the contract and the table of methods.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from tlcourse.checks import check_int, check_non_negative, check_positive, value_checks_enabled
from tlcourse.distributed import all_reduce_mean
from tlcourse.multitask.gradients import (
    _check_losses,
    _min_pairwise_cosine,
    _params_list,
    pcgrad_project,
    task_gradients,
)
from tlcourse.multitask.model import _check_task_names

LossScale = float | torch.Tensor


def _output(weights: dict[str, float | torch.Tensor], as_tensors: bool) -> dict[str, float | torch.Tensor]:
    """The weights a ``backward`` returns: as they are, or as floats (which reads the device)."""
    return weights if as_tensors else {task: float(w) for task, w in weights.items()}


def _scaled(values: Sequence[torch.Tensor], loss_scale: LossScale) -> list[torch.Tensor]:
    """``values`` times ``loss_scale`` (left alone for the plain scale 1.0)."""
    if isinstance(loss_scale, float) and loss_scale == 1.0:
        return list(values)
    return [v * loss_scale for v in values]

__all__ = [
    "Weighting",
    "LossWeighting",
    "EqualWeighting",
    "UncertaintyWeighting",
    "DynamicWeightAverage",
    "GradNorm",
    "PCGrad",
    "WEIGHTINGS",
    "make_weighting",
    "dwa_weights",
]


class Weighting(nn.Module, abc.ABC):
    """Base class of all weightings: ``backward(losses, shared_parameters=None, loss_scale=1.0) -> weights``.

    ``backward`` fills ``.grad`` and returns the weights it used, as floats; with
    ``as_tensors=True`` as numbers or 0-d tensors on the losses' device, which a training loop
    can keep without waiting for the device. ``loss_scale`` (the mixed-precision loss scale, or
    ``1/k`` to accumulate ``k`` batches) multiplies everything back-propagated, exactly as
    ``(loss_scale · L).backward()`` would. Under ``torchrun`` the
    training loop averages the gradients over processes afterwards; weightings that need more
    say what they all-reduce.

    Args:
        tasks: the task names. Every call must pass exactly these keys (in any order).
    """

    #: whether ``backward`` needs ``shared_parameters``
    needs_shared_parameters: bool = False

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks: tuple[str, ...] = _check_task_names("tasks", tasks)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def check_losses(self, losses: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Validate ``losses`` and return them in the order of ``self.tasks``."""
        _check_losses(losses)
        if set(losses) != set(self.tasks):
            missing = [t for t in self.tasks if t not in losses]
            extra = [t for t in losses if t not in self.tasks]
            raise ValueError(
                f"losses must have exactly the keys {list(self.tasks)}; missing {missing}, unexpected {extra}"
            )
        return [losses[t] for t in self.tasks]

    @property
    def weights(self) -> dict[str, float]:
        """The current task weights."""
        return dict.fromkeys(self.tasks, 1.0)

    @abc.abstractmethod
    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        shared_parameters: Iterable[torch.Tensor] | None = None,
        loss_scale: LossScale = 1.0,
        as_tensors: bool = False,
    ) -> dict[str, float | torch.Tensor]:
        """Back-propagate the multi-task objective into ``.grad``; return the weights used."""

    def end_epoch(self) -> None:
        """Tell the weighting an epoch ended (used by :class:`DynamicWeightAverage`)."""

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}"


class LossWeighting(Weighting):
    """A weighting that only scales the losses: ``backward`` is ``combine(losses).backward()``."""

    def current_weights(self) -> list[float | torch.Tensor]:
        """The weights as numbers or tensors, in task order (read without waiting for a device)."""
        return [1.0] * self.num_tasks

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted total loss (Eq. 5.1) to back-propagate."""
        values = self.check_losses(losses)
        return sum(w * loss for w, loss in zip(self.current_weights(), values))

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        shared_parameters: Iterable[torch.Tensor] | None = None,
        loss_scale: LossScale = 1.0,
        as_tensors: bool = False,
    ) -> dict[str, float | torch.Tensor]:
        weights = dict(zip(self.tasks, self.current_weights()))
        (total,) = _scaled([self.combine(losses)], loss_scale)
        total.backward()
        return _output(weights, as_tensors)


class EqualWeighting(LossWeighting):
    """``w_τ = 1``: the plain sum of the task losses, Eq. (5.1).

    A strong baseline: across benchmarks, tuned equal weighting matches most adaptive methods
    (Xin et al., 2022; Kurin et al., 2022).
    """


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, 2018), Eq. (5.2).

    Each task has a learnable log-variance ``s_τ = log σ_τ²`` and the objective is

        L = Σ_τ exp(−s_τ) L_τ + s_τ,

    twice Kendall et al.'s Eq. (7) (the factor 2 does not move the optimum). The weights
    ``w_τ = exp(−s_τ)`` are positive by construction; the ``+ s_τ`` term stops them from
    collapsing to zero. At the optimum of ``s_τ``, ``w_τ = 1 / L_τ``: noisy (high-loss) tasks
    get small weights. ``s`` starts at ``init_log_var`` (0 → equal weights); put
    ``weighting.parameters()`` in the optimizer.
    """

    def __init__(self, tasks: Sequence[str], init_log_var: float = 0.0) -> None:
        super().__init__(tasks)
        if not isinstance(init_log_var, (int, float)) or isinstance(init_log_var, bool):
            raise TypeError(f"init_log_var must be a number, got {type(init_log_var).__name__}")
        if not math.isfinite(init_log_var):
            raise ValueError(f"init_log_var must be finite, got {init_log_var}")
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), float(init_log_var)))

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(-self.log_vars.detach()).tolist()))

    def current_weights(self) -> list[float | torch.Tensor]:
        return list(torch.exp(-self.log_vars.detach()).unbind())

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = torch.stack([v.reshape(()) for v in self.check_losses(losses)])
        s = self.log_vars.to(values.device)
        return (torch.exp(-s) * values + s).sum()


def dwa_weights(
    previous: Sequence[float] | torch.Tensor, before_previous: Sequence[float] | torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """Dynamic weight average (Liu, Johns and Davison, 2019, Eq. 7), Eq. (5.3).

    ``r_k = L_k(t−1) / L_k(t−2)`` is task ``k``'s rate of descent over the last epoch and

        w_k(t) = K exp(r_k / T) / Σ_i exp(r_i / T):

    tasks whose loss stalls (``r_k`` near or above 1) get more weight; the weights sum to ``K``.
    """
    check_positive("temperature", temperature)
    prev = torch.as_tensor(previous, dtype=torch.float64)
    before = torch.as_tensor(before_previous, dtype=torch.float64)
    if prev.ndim != 1 or prev.shape != before.shape or len(prev) == 0:
        raise ValueError(
            "previous and before_previous must be 1-D with one average loss per task and the same length, "
            f"got shapes {tuple(prev.shape)} and {tuple(before.shape)}"
        )
    for name, values in (("previous", prev), ("before_previous", before)):
        if not torch.isfinite(values).all():
            raise ValueError(f"{name} holds NaN or infinite average losses ({values.tolist()}): DWA's loss ratios "
                             "and weights would be NaN; a task's loss diverged or was never recorded")
    if (before <= 0).any() or (prev < 0).any():
        raise ValueError("average losses must be >= 0 (and > 0 for before_previous) to form loss ratios")
    rates = prev / before
    return len(rates) * torch.softmax(rates / temperature, dim=0)


class DynamicWeightAverage(LossWeighting):
    """Dynamic weight average, DWA (Liu et al., 2019): :func:`dwa_weights` from epoch losses.

    The loss of each task is averaged over an epoch (all ``backward``/``combine`` calls between
    two ``end_epoch()`` calls). The weights are 1 during the first two epochs, then
    ``dwa_weights(L(t−1), L(t−2), temperature)``. ``temperature=2`` is the paper's value; a
    larger one flattens the weights towards equal weighting.
    """

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        self.temperature = float(check_positive("temperature", temperature))
        self.register_buffer("_weights", torch.ones(self.num_tasks, dtype=torch.float64))
        self._sum = torch.zeros(self.num_tasks, dtype=torch.float64)  # on the losses' device once used
        self._count = 0
        self.epoch_losses: list[list[float]] = []  # average loss of each task, one row per epoch

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self._weights.tolist()))

    def current_weights(self) -> list[float | torch.Tensor]:
        return list(self._weights.unbind())

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = self.check_losses(losses)
        dtype = torch.float32 if values[0].device.type == "mps" else torch.float64
        self._sum = self._sum.to(values[0].device, dtype) + torch.stack([v.detach().reshape(()).to(dtype)
                                                                         for v in values])
        self._count += 1
        weights = self._weights.to(values[0].device, values[0].dtype)
        return sum(wk * v for wk, v in zip(weights.unbind(), values))

    def end_epoch(self) -> None:
        """Average the epoch's losses (over every process under ``torchrun``) and update the weights."""
        if self._count == 0:
            return
        self.epoch_losses.append(all_reduce_mean(self._sum / self._count).tolist())
        self._sum = torch.zeros_like(self._sum)
        self._count = 0
        if len(self.epoch_losses) >= 2:
            new = dwa_weights(self.epoch_losses[-1], self.epoch_losses[-2], self.temperature)
            self._weights.copy_(new)

    def get_extra_state(self) -> dict[str, object]:
        return {"epoch_losses": self.epoch_losses, "sum": self._sum.tolist(), "count": self._count}

    def set_extra_state(self, state: dict[str, object]) -> None:
        self.epoch_losses = [list(row) for row in state["epoch_losses"]]  # type: ignore[union-attr]
        self._sum = torch.tensor(state["sum"], dtype=torch.float64)
        self._count = int(state["count"])  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}, temperature={self.temperature}"


class GradNorm(Weighting):
    """GradNorm (Chen et al., 2018): learn weights that balance the task gradient norms, Eq. (5.4).

    On the shared parameters ``W`` (Chen et al. use the last shared layer) let
    ``G_k = ‖∇_W w_k L_k‖``, ``Ḡ`` their mean, ``L̃_k = L_k(t) / L_k(0)`` the inverse training
    rate and ``r_k = L̃_k / mean_j L̃_j``. GradNorm minimises, over the weights only,

        ``L_grad = Σ_k abs(G_k − Ḡ · r_k^α)``,     the target ``Ḡ · r_k^α`` held constant,

    so a task that trains slowly (large ``r_k``) or has a small gradient gets a larger weight.
    ``alpha`` sets the strength of the pull (0: equal gradient norms; the paper uses 0.12–3).
    The network is trained on ``Σ_k w_k L_k``. The weights are parameters: put
    ``weighting.parameters()`` in the optimizer (a larger learning rate for them, as a separate
    parameter group, speeds the balancing up). They are renormalised to ``Σ_k w_k = K`` (and kept
    positive) before each use, as in the paper. ``L_k(0)`` is the first loss seen.
    """

    needs_shared_parameters = True

    def __init__(self, tasks: Sequence[str], alpha: float = 1.5) -> None:
        super().__init__(tasks)
        self.alpha = float(check_non_negative("alpha", alpha))
        self.task_weights = nn.Parameter(torch.ones(self.num_tasks))
        self.register_buffer("initial_losses", torch.zeros(self.num_tasks))
        self.register_buffer("started", torch.tensor(False))
        self.last_grad_norms: dict[str, torch.Tensor] = {}  # G_k of the last step (0-d tensors)

    @torch.no_grad()
    def renormalize(self) -> None:
        """Clamp the weights positive and rescale them to sum to the number of tasks."""
        w = self.task_weights
        w.clamp_(min=1e-3)
        w.mul_(self.num_tasks / w.sum())

    @property
    def weights(self) -> dict[str, float]:
        w = self.task_weights.detach().clamp(min=1e-3)
        return dict(zip(self.tasks, (w * self.num_tasks / w.sum()).tolist()))

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        shared_parameters: Iterable[torch.Tensor] | None = None,
        loss_scale: LossScale = 1.0,
        as_tensors: bool = False,
    ) -> dict[str, float | torch.Tensor]:
        """Update the weights' gradient (Eq. 5.4), then back-propagate ``Σ_k w_k L_k``.

        Under ``torchrun`` the task losses and the task gradients on the shared parameters are
        averaged over the processes (all-reduced) before the norms and training rates are
        formed, so every process computes the weights' gradient of the global batch.
        """
        values = self.check_losses(losses)
        params = _params_list("shared_parameters", shared_parameters, "GradNorm")
        self.renormalize()
        loss_vec = torch.stack([v.detach().reshape(()).float() for v in values]).to(self.task_weights.device)
        loss_vec = all_reduce_mean(loss_vec)
        # L_k(0): the first losses seen (a select on the device, no host round trip)
        self.initial_losses.copy_(torch.where(self.started, self.initial_losses, loss_vec.clamp_min(1e-12)))
        self.started.fill_(True)
        # ‖∇_W L_k‖ for each task; G_k = w_k ‖∇_W L_k‖ is linear in w_k (w_k > 0), so no
        # second-order graph is needed for the gradient of L_grad w.r.t. the weights.
        grads = all_reduce_mean(task_gradients(dict(zip(self.tasks, _scaled(values, loss_scale))), params))
        norms = grads.norm(dim=1).to(self.task_weights.device)
        if not (isinstance(loss_scale, float) and loss_scale == 1.0):
            norms = norms / loss_scale
        w = self.task_weights
        g = w * norms
        inverse_rate = loss_vec / self.initial_losses
        r = inverse_rate / inverse_rate.mean()
        target = (g.mean() * r.pow(self.alpha)).detach()
        grad_loss = (g - target).abs().sum()
        (w_grad,) = torch.autograd.grad(grad_loss, [w])
        (w_grad,) = _scaled([w_grad], loss_scale)
        w.grad = w_grad if w.grad is None else w.grad + w_grad
        weights = w.detach().clone()
        total = sum(wk * v for wk, v in zip(weights.to(values[0].device), values))
        _scaled([total], loss_scale)[0].backward()
        self.last_grad_norms = dict(zip(self.tasks, g.detach().unbind()))
        return _output(dict(zip(self.tasks, weights.unbind())), as_tensors)

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}, alpha={self.alpha}"


class PCGrad(Weighting):
    """PCGrad, gradient surgery (Yu et al., 2020): :func:`pcgrad_project` on the shared parameters.

    Each task's gradient on ``shared_parameters`` is computed separately, conflicting
    components are projected away and the projected gradients are summed into ``.grad``.
    Task-specific parameters (the heads) get their ordinary gradients. This costs one backward
    pass per task plus one. With ``keep_gradients=True`` the last step's original and projected
    gradients are kept in ``last_gradients`` and ``last_projected`` (for plots and checks).
    """

    needs_shared_parameters = True

    def __init__(self, tasks: Sequence[str], seed: int | None = None, keep_gradients: bool = False) -> None:
        super().__init__(tasks)
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(check_int("seed", seed, minimum=0))
        self.keep_gradients = bool(keep_gradients)
        self.last_gradients: torch.Tensor | None = None
        self.last_projected: torch.Tensor | None = None
        # at the last step, as 0-d tensors (int(...)/float(...) read them):
        self.num_conflicts: torch.Tensor | int = 0  # conflicting pairs (i < j, g_i · g_j < 0)
        self.min_projected_cosine: torch.Tensor | float = 1.0  # smallest cosine between projected gradients

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        shared_parameters: Iterable[torch.Tensor] | None = None,
        loss_scale: LossScale = 1.0,
        as_tensors: bool = False,
    ) -> dict[str, float | torch.Tensor]:
        """Project the task gradients (Eq. 5.5), write their sum into the shared ``.grad``.

        Under ``torchrun`` the per-task gradients on the shared parameters (a ``K × P`` matrix)
        are averaged over the processes (all-reduced) *before* the projection, so every process
        projects the gradients of the global batch, in the same random order, and writes the
        same update; the heads' gradients are averaged by the training loop as usual.
        """
        values = self.check_losses(losses)
        stacked = torch.stack([v.detach().reshape(()) for v in values])
        if value_checks_enabled() and not bool(torch.isfinite(stacked).all()):
            bad = [t for t, v in zip(self.tasks, values) if not bool(torch.isfinite(v.detach()).all())]
            raise ValueError(f"losses of {bad} are NaN or infinite: PCGrad's projection would spread NaN into every "
                             "shared gradient (this check is one device sync; tlcourse.checks.set_value_checks(False))")
        params = _params_list("shared_parameters", shared_parameters, "PCGrad")
        scaled = _scaled(values, loss_scale)
        grads = all_reduce_mean(task_gradients(dict(zip(self.tasks, scaled)), params))
        projected = pcgrad_project(grads, self.generator)  # homogeneous: projecting scaled gradients is fine
        self.num_conflicts = (torch.triu(grads @ grads.T, diagonal=1) < 0).sum()
        self.min_projected_cosine = _min_pairwise_cosine(projected)
        if self.keep_gradients:
            unscale = 1.0 if isinstance(loss_scale, float) and loss_scale == 1.0 else loss_scale
            self.last_gradients, self.last_projected = grads.detach() / unscale, projected.detach() / unscale
        before = [None if p.grad is None else p.grad.clone() for p in params]
        sum(scaled).backward()  # the heads' (task-specific) gradients
        update = projected.sum(dim=0)
        offset = 0
        for p, old in zip(params, before):
            n = p.numel()
            g = update[offset : offset + n].view_as(p).to(p.dtype)
            p.grad = g if old is None else old + g
            offset += n
        return dict.fromkeys(self.tasks, 1.0)

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


WEIGHTINGS: dict[str, type[Weighting]] = {
    "equal": EqualWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "gradnorm": GradNorm,
    "pcgrad": PCGrad,
}


def make_weighting(name: str, tasks: Sequence[str], **kwargs: object) -> Weighting:
    """Build a weighting by name: ``make_weighting("dwa", ["digit", "parity"], temperature=2.0)``.

    Names: ``"equal"``, ``"uncertainty"``, ``"dwa"``, ``"gradnorm"``, ``"pcgrad"``; ``kwargs``
    go to the class (e.g. ``alpha`` for GradNorm, ``seed`` for PCGrad).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("_", "")
    aliases = {"uw": "uncertainty", "dynamicweightaverage": "dwa", "gradientsurgery": "pcgrad"}
    key = aliases.get(key, key)
    if key not in WEIGHTINGS:
        raise ValueError(f"name must be one of {list(WEIGHTINGS)}, got {name!r}")
    try:
        return WEIGHTINGS[key](tasks, **kwargs)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise TypeError(f"{WEIGHTINGS[key].__name__} got an unknown option: {err}") from err
        raise
