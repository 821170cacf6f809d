"""Multi-task learning: one shared encoder, one head per task, and how to weigh the tasks.

Chapter 5 of the book. Hard parameter sharing (Caruana, 1997; Ruder, 2017) trains one encoder
``f_θ`` for all tasks and a small head ``h_τ`` per task on the joint objective

    L(θ, φ) = Σ_τ w_τ L_τ(θ, φ_τ),                                         Eq. (5.1)

where ``L_τ`` is the loss of task ``τ``. The methods below differ only in how the weights
``w_τ`` are chosen, or, for PCGrad, in how the task gradients are combined.

**One contract for every method.** A weighting is an :class:`torch.nn.Module` built with the
task names, and a training step of *your own* loop is::

    losses = {"digit": ce(out["digit"], y_digit), "parity": ce(out["parity"], y_parity)}
    optimizer.zero_grad()
    weights = weighting.backward(losses, shared_parameters=model.shared_parameters())
    optimizer.step()

``backward`` fills the ``.grad`` of every parameter (like ``loss.backward()``) and returns the
weights it used. Put ``weighting.parameters()`` in the optimizer as well (only
:class:`UncertaintyWeighting` and :class:`GradNorm` have any). Call ``weighting.end_epoch()``
at the end of each epoch (only :class:`DynamicWeightAverage` uses it). Methods that only
re-weight losses also offer ``combine(losses) -> Tensor``, the weighted sum to back-propagate.

=========================  =============================  ======================
name (``make_weighting``)  class                          paper
=========================  =============================  ======================
``"equal"``                :class:`EqualWeighting`        Eq. (5.1) with w_τ = 1
``"uncertainty"``          :class:`UncertaintyWeighting`  Kendall et al. (2018)
``"dwa"``                  :class:`DynamicWeightAverage`  Liu et al. (2019)
``"gradnorm"``             :class:`GradNorm`              Chen et al. (2018)
``"pcgrad"``               :class:`PCGrad`                Yu et al. (2020)
=========================  =============================  ======================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, default_collate

from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive

__all__ = [
    "MultiTaskModel",
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
    "pcgrad_project",
    "task_gradients",
    "gradient_cosine",
    "relative_gain",
    "MultiTaskHistory",
    "fit_multitask",
    "evaluate_multitask",
]


# --------------------------------------------------------------------------------------------
# Hard parameter sharing
# --------------------------------------------------------------------------------------------


def _check_task_names(name: str, tasks: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tasks, str) or not isinstance(tasks, Iterable):
        raise TypeError(f"{name} must be a sequence of task names, got {type(tasks).__name__}")
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError(f"{name} must name at least one task, got none")
    for task in tasks:
        if not isinstance(task, str) or not task:
            raise TypeError(f"{name} must hold non-empty strings, got {task!r}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"{name} must not repeat a task, got {list(tasks)}")
    return tasks


class MultiTaskModel(nn.Module):
    """Hard parameter sharing: ``{task: heads[task](encoder(x))}`` (Caruana, 1997).

    Args:
        encoder: shared module mapping an input batch to features ``(N, D)`` (any module, e.g.
            :class:`tlcourse.models.resnet.Backbone`).
        heads: one module per task, mapping features to that task's outputs (e.g.
            ``nn.Linear(D, num_classes)``). The keys are the task names used everywhere else.

    ``model(x)`` applies every head to every row of ``x``. When each task has its *own* batch
    (tasks labelled on different images, the usual case when one task has few labels), call
    ``model({task: x_task, ...})``: the encoder runs once on the concatenated batches (so batch
    normalisation sees all tasks) and each head gets only its own rows.
    """

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        if not isinstance(heads, Mapping):
            raise TypeError(f"heads must be a dict of task name -> nn.Module, got {type(heads).__name__}")
        _check_task_names("heads", heads.keys())
        for task, head in heads.items():
            if not isinstance(head, nn.Module):
                raise TypeError(f"heads[{task!r}] must be a torch.nn.Module, got {type(head).__name__}")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, in the order of ``heads``."""
        return tuple(self.heads.keys())

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the shared encoder (what the task gradients compete for)."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters of one task's head."""
        check_choice("task", task, self.tasks)
        return [p for p in self.heads[task].parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(x, torch.Tensor):
            features = self.encoder(x)
            return {task: head(features) for task, head in self.heads.items()}
        if not isinstance(x, Mapping):
            raise TypeError(f"x must be a Tensor or a dict of task name -> Tensor, got {type(x).__name__}")
        if not x:
            raise ValueError("x must hold at least one task's batch, got an empty dict")
        unknown = [task for task in x if task not in self.heads]
        if unknown:
            raise ValueError(f"x has no head for tasks {unknown}; the model's tasks are {list(self.tasks)}")
        sizes = [len(batch) for batch in x.values()]
        features = self.encoder(torch.cat(list(x.values())))
        return {task: self.heads[task](f) for task, f in zip(x, features.split(sizes))}


# --------------------------------------------------------------------------------------------
# The weighting contract
# --------------------------------------------------------------------------------------------


def _params_list(name: str, params: Iterable[torch.Tensor] | None, needed_by: str) -> list[torch.Tensor]:
    if params is None:
        raise ValueError(
            f"{name} is required by {needed_by}: pass the shared encoder's parameters, "
            "e.g. shared_parameters=model.shared_parameters()"
        )
    if isinstance(params, torch.Tensor):
        params = [params]
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError(f"{name} must contain at least one parameter that requires grad")
    return params


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def task_gradients(
    losses: Mapping[str, torch.Tensor], shared_parameters: Iterable[torch.Tensor], retain_graph: bool = True
) -> torch.Tensor:
    """Gradients of each task's loss w.r.t. the shared parameters, flattened: ``(K, P)``.

    Row ``k`` is ``∇_θ L_k`` for the ``k``-th key of ``losses`` (a parameter a loss does not
    reach gets zeros). The graph is kept by default so that the losses can still be used.
    """
    _check_losses(losses)
    params = _params_list("shared_parameters", shared_parameters, "task_gradients")
    rows = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        rows.append(_flat(grads, params))
    return torch.stack(rows)


def gradient_cosine(
    losses: Mapping[str, torch.Tensor], shared_parameters: Iterable[torch.Tensor], retain_graph: bool = True
) -> torch.Tensor:
    """Cosine similarity between the task gradients on the shared parameters: ``(K, K)``.

    ``cos(g_i, g_j) < 0`` means a step that lowers task ``i``'s loss raises task ``j``'s to first
    order: the tasks *conflict* (Yu et al., 2020, Def. 1). Entry order follows ``losses``.
    """
    g = task_gradients(losses, shared_parameters, retain_graph=retain_graph)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return g @ g.T


def _check_losses(losses: object) -> None:
    if not isinstance(losses, Mapping):
        raise TypeError(f"losses must be a dict of task name -> scalar loss tensor, got {type(losses).__name__}")
    if not losses:
        raise ValueError("losses must hold at least one task's loss, got an empty dict")
    for task, loss in losses.items():
        if not isinstance(loss, torch.Tensor):
            raise TypeError(f"losses[{task!r}] must be a torch.Tensor, got {type(loss).__name__}")
        if loss.numel() != 1:
            raise ValueError(
                f"losses[{task!r}] must be a scalar (reduce it with .mean()), got shape {tuple(loss.shape)}"
            )
        if not loss.is_floating_point():
            raise TypeError(f"losses[{task!r}] must be a floating-point tensor, got {loss.dtype}")
        if not torch.isfinite(loss.detach()).all():
            raise ValueError(f"losses[{task!r}] is {loss.item()}: the loss is not finite (NaN or inf)")


class Weighting(nn.Module):
    """Base class of all weightings: ``backward(losses, shared_parameters=None) -> weights``.

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

    def backward(
        self, losses: Mapping[str, torch.Tensor], shared_parameters: Iterable[torch.Tensor] | None = None
    ) -> dict[str, float]:
        """Back-propagate the multi-task objective into ``.grad``; return the weights used."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Tell the weighting an epoch ended (used by :class:`DynamicWeightAverage`)."""

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}"


class LossWeighting(Weighting):
    """A weighting that only scales the losses: ``backward`` is ``combine(losses).backward()``."""

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted total loss (Eq. 5.1) to back-propagate."""
        values = self.check_losses(losses)
        w = self.weights
        return sum(w[t] * loss for t, loss in zip(self.tasks, values))

    def backward(
        self, losses: Mapping[str, torch.Tensor], shared_parameters: Iterable[torch.Tensor] | None = None
    ) -> dict[str, float]:
        weights = self.weights
        self.combine(losses).backward()
        return weights


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
        self._sum = torch.zeros(self.num_tasks, dtype=torch.float64)
        self._count = 0
        self.epoch_losses: list[list[float]] = []  # average loss of each task, one row per epoch

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self._weights.tolist()))

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = self.check_losses(losses)
        self._sum += torch.tensor([float(v.detach()) for v in values], dtype=torch.float64)
        self._count += 1
        w = self._weights.tolist()
        return sum(wk * v for wk, v in zip(w, values))

    def end_epoch(self) -> None:
        if self._count == 0:
            return
        self.epoch_losses.append((self._sum / self._count).tolist())
        self._sum.zero_()
        self._count = 0
        if len(self.epoch_losses) >= 2:
            new = dwa_weights(self.epoch_losses[-1], self.epoch_losses[-2], self.temperature)
            self._weights.copy_(new)

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
        self.last_grad_norms: dict[str, float] = {}

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
        self, losses: Mapping[str, torch.Tensor], shared_parameters: Iterable[torch.Tensor] | None = None
    ) -> dict[str, float]:
        values = self.check_losses(losses)
        params = _params_list("shared_parameters", shared_parameters, "GradNorm")
        self.renormalize()
        loss_vec = torch.stack([v.detach().reshape(()).float() for v in values]).to(self.task_weights.device)
        if not bool(self.started):
            self.initial_losses.copy_(loss_vec.clamp_min(1e-12))
            self.started.fill_(True)
        # ‖∇_W L_k‖ for each task; G_k = w_k ‖∇_W L_k‖ is linear in w_k (w_k > 0), so no
        # second-order graph is needed for the gradient of L_grad w.r.t. the weights.
        norms = task_gradients(dict(zip(self.tasks, values)), params)
        norms = norms.norm(dim=1).to(self.task_weights.device)
        w = self.task_weights
        g = w * norms
        inverse_rate = loss_vec / self.initial_losses
        r = inverse_rate / inverse_rate.mean()
        target = (g.mean() * r.pow(self.alpha)).detach()
        grad_loss = (g - target).abs().sum()
        (w_grad,) = torch.autograd.grad(grad_loss, [w])
        w.grad = w_grad if w.grad is None else w.grad + w_grad
        weights = w.detach().clone()
        total = sum(wk * v for wk, v in zip(weights.to(values[0].device), values))
        total.backward()
        self.last_grad_norms = dict(zip(self.tasks, g.detach().tolist()))
        return dict(zip(self.tasks, weights.tolist()))

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}, alpha={self.alpha}"


def pcgrad_project(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Projecting conflicting gradients (Yu et al., 2020, Algorithm 1), Eq. (5.5).

    For each task ``i``, visit the other tasks ``j`` in random order; whenever the (already
    projected) ``g_i`` conflicts with the original ``g_j`` (``g_i · g_j < 0``), remove its
    component along ``g_j``:

        g_i ← g_i − (g_i · g_j / ‖g_j‖²) g_j.

    Non-conflicting gradients are left unchanged. With two tasks the projected gradients never
    conflict, with each other or with the original ones (Yu et al., Thm. 1); with more tasks a
    later projection can re-introduce a small conflict with an earlier ``g_j``.

    Args:
        grads: ``(K, P)`` flattened task gradients (see :func:`task_gradients`).
        generator: random generator for the visiting order (reproducible runs).
    Returns:
        ``(K, P)`` projected gradients; PCGrad's update direction is their sum.
    """
    if not isinstance(grads, torch.Tensor) or grads.ndim != 2 or not grads.is_floating_point():
        raise ValueError(f"grads must be a (num_tasks, num_params) float tensor, got {getattr(grads, 'shape', grads)}")
    k = grads.shape[0]
    projected = grads.clone()
    sq_norms = (grads * grads).sum(dim=1)
    for i in range(k):
        others = [j for j in torch.randperm(k, generator=generator).tolist() if j != i]
        for j in others:
            dot = torch.dot(projected[i], grads[j])
            if dot < 0 and sq_norms[j] > 0:
                projected[i] -= dot / sq_norms[j] * grads[j]
    return projected


def _min_pairwise_cosine(vectors: torch.Tensor) -> float:
    """Smallest cosine similarity between two different rows (1.0 for a single row)."""
    if len(vectors) < 2:
        return 1.0
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    i, j = torch.triu_indices(len(vectors), len(vectors), offset=1)
    return float(cos[i, j].min())


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
        self.num_conflicts: int = 0  # conflicting pairs (i < j, g_i · g_j < 0) at the last step
        self.min_projected_cosine: float = 1.0  # smallest cosine between projected gradients, last step

    def backward(
        self, losses: Mapping[str, torch.Tensor], shared_parameters: Iterable[torch.Tensor] | None = None
    ) -> dict[str, float]:
        values = self.check_losses(losses)
        params = _params_list("shared_parameters", shared_parameters, "PCGrad")
        grads = task_gradients(dict(zip(self.tasks, values)), params)
        projected = pcgrad_project(grads, self.generator)
        self.num_conflicts = int((torch.triu(grads @ grads.T, diagonal=1) < 0).sum())
        self.min_projected_cosine = _min_pairwise_cosine(projected)
        if self.keep_gradients:
            self.last_gradients, self.last_projected = grads.detach(), projected.detach()
        before = [None if p.grad is None else p.grad.clone() for p in params]
        sum(values).backward()  # the heads' (task-specific) gradients
        update = projected.sum(dim=0)
        offset = 0
        for p, old in zip(params, before):
            n = p.numel()
            g = update[offset : offset + n].view_as(p).to(p.dtype)
            p.grad = g if old is None else old + g
            offset += n
        return dict.fromkeys(self.tasks, 1.0)


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Evaluation helper
# --------------------------------------------------------------------------------------------


def relative_gain(
    multi_task: Mapping[str, float],
    single_task: Mapping[str, float],
    higher_is_better: Mapping[str, bool] | None = None,
) -> tuple[dict[str, float], float]:
    """Relative multi-task gain Δ in percent (Maninis et al., 2019; Vandenhende et al., 2021), Eq. (5.6).

        Δ_τ = 100 · (−1)^{l_τ} (M_τ^multi − M_τ^single) / M_τ^single,     Δ = mean_τ Δ_τ,

    with ``l_τ = 1`` when lower is better for metric ``M_τ`` (an error or a loss). Returns the
    per-task gains and their mean.
    """
    if set(multi_task) != set(single_task):
        raise ValueError(
            f"multi_task and single_task must have the same tasks, got {sorted(multi_task)} and {sorted(single_task)}"
        )
    if not multi_task:
        raise ValueError("multi_task must hold at least one task's metric, got an empty dict")
    higher_is_better = dict(higher_is_better or {})
    gains = {}
    for task in single_task:
        base = float(single_task[task])
        if base == 0:
            raise ValueError(f"single_task[{task!r}] is 0: a relative gain needs a non-zero baseline")
        sign = 1.0 if higher_is_better.get(task, True) else -1.0
        gains[task] = 100.0 * sign * (float(multi_task[task]) - base) / abs(base)
    return gains, sum(gains.values()) / len(gains)


# --------------------------------------------------------------------------------------------
# A compact training loop built from the pieces above
# --------------------------------------------------------------------------------------------


@dataclass
class MultiTaskHistory:
    """What :func:`fit_multitask` records: losses and weights per step, gradient cosines."""

    tasks: tuple[str, ...]
    losses: dict[str, list[float]] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)
    cosine_steps: list[int] = field(default_factory=list)
    cosines: list[torch.Tensor] = field(default_factory=list)  # (K, K) per recorded step
    conflicts: list[int] = field(default_factory=list)  # PCGrad: conflicting pairs per step
    min_projected_cosine: list[float] = field(default_factory=list)  # PCGrad: after projection
    seconds: float = 0.0

    def cosine(self, task_a: str, task_b: str) -> list[float]:
        """The recorded gradient cosine between two tasks, one value per entry of ``cosine_steps``."""
        i, j = self.tasks.index(check_choice("task_a", task_a, self.tasks)), self.tasks.index(
            check_choice("task_b", task_b, self.tasks)
        )
        return [float(c[i, j]) for c in self.cosines]


def _sample(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    plain = getattr(dataset, "transform", None) is None
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) and plain:
        return images[index], labels[index]
    rows = index.tolist()
    items = dataset.__getitems__(rows) if hasattr(dataset, "__getitems__") else [dataset[i] for i in rows]
    return default_collate(items)


def fit_multitask(
    model: MultiTaskModel,
    train_sets: Mapping[str, Dataset],
    weighting: Weighting | str = "equal",
    *,
    steps: int,
    batch_size: int | Mapping[str, int] = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    weighting_lr: float | None = None,
    steps_per_epoch: int = 50,
    loss_fns: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
    shared_parameters: Callable[[MultiTaskModel], Iterable[torch.Tensor]] | None = None,
    track_cosine_every: int | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
) -> MultiTaskHistory:
    """Train ``model`` on several labelled sets at once, one batch per task per step.

    Each task has its own training set (tasks need not be labelled on the same images; a
    low-data task simply has a small set, sampled with replacement). A step draws
    ``batch_size`` examples per task, runs the encoder once on all of them
    (``model({task: x})``), computes each task's loss (cross-entropy unless ``loss_fns`` says
    otherwise) and calls ``weighting.backward``, then takes an AdamW step on the model and the
    weighting's parameters. Every ``steps_per_epoch`` steps ``weighting.end_epoch()`` is
    called. With ``track_cosine_every=n`` the task-gradient cosine matrix is recorded every
    ``n`` steps (:func:`gradient_cosine`, before the update). This is the loop of Section 5.3
    written once; a single-task baseline is the same call with one head and one set.
    """
    from tlcourse.utils import get_device, seed_everything

    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"model must be a MultiTaskModel, got {type(model).__name__}")
    if not isinstance(train_sets, Mapping):
        raise TypeError(f"train_sets must be a dict of task name -> Dataset, got {type(train_sets).__name__}")
    tasks = _check_task_names("train_sets", train_sets.keys())
    missing = [t for t in tasks if t not in model.heads]
    if missing:
        raise ValueError(f"train_sets has tasks {missing} for which the model has no head (heads: {list(model.tasks)})")
    for task, data in train_sets.items():
        if len(data) == 0:
            raise ValueError(f"train_sets[{task!r}] is empty: expected at least one example")
    check_int("steps", steps, minimum=1)
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_positive("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    if track_cosine_every is not None:
        check_int("track_cosine_every", track_cosine_every, minimum=1)
    sizes = dict(batch_size) if isinstance(batch_size, Mapping) else dict.fromkeys(tasks, batch_size)
    for task in tasks:
        check_int(f"batch_size[{task!r}]", sizes.get(task), minimum=1)
    if isinstance(weighting, str):
        weighting = make_weighting(weighting, tasks)
    if not isinstance(weighting, Weighting):
        raise TypeError(f"weighting must be a Weighting or a name, got {type(weighting).__name__}")
    if set(weighting.tasks) != set(tasks):
        raise ValueError(f"weighting.tasks {list(weighting.tasks)} must match the tasks of train_sets {list(tasks)}")
    loss_fns = dict(loss_fns or {})
    unknown = [t for t in loss_fns if t not in tasks]
    if unknown:
        raise ValueError(f"loss_fns has tasks {unknown} that are not in train_sets {list(tasks)}")

    if seed is not None:
        seed_everything(seed)
    device = get_device(device)
    model.to(device).train()
    weighting.to(device)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    extra = [p for p in weighting.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": weighting_lr or lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    history = MultiTaskHistory(tasks, {t: [] for t in tasks}, {t: [] for t in tasks})
    get_shared = shared_parameters or (lambda m: m.shared_parameters())

    start = time.perf_counter()
    for step in range(steps):
        inputs, targets = {}, {}
        for task in tasks:
            index = torch.randint(len(train_sets[task]), (sizes[task],), generator=generator)
            x, y = _sample(train_sets[task], index)
            inputs[task] = x.to(device, non_blocking=True)
            targets[task] = y.to(device, non_blocking=True)
        outputs = model(inputs)
        losses = {t: loss_fns.get(t, F.cross_entropy)(outputs[t], targets[t]) for t in tasks}
        if track_cosine_every is not None and step % track_cosine_every == 0 and len(tasks) > 1:
            history.cosine_steps.append(step)
            history.cosines.append(gradient_cosine(losses, list(get_shared(model))).detach().cpu())
        optimizer.zero_grad(set_to_none=True)
        weights = weighting.backward(losses, shared_parameters=list(get_shared(model)))
        optimizer.step()
        for t in tasks:
            history.losses[t].append(float(losses[t].detach()))
            history.weights[t].append(float(weights[t]))
        if isinstance(weighting, PCGrad):
            history.conflicts.append(weighting.num_conflicts)
            history.min_projected_cosine.append(weighting.min_projected_cosine)
        if (step + 1) % steps_per_epoch == 0:
            weighting.end_epoch()
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


@torch.no_grad()
def evaluate_multitask(
    model: MultiTaskModel,
    test_sets: Mapping[str, Dataset],
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Accuracy of each task's head on its own test set: ``{task: accuracy}``."""
    from tlcourse.utils import get_device

    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"model must be a MultiTaskModel, got {type(model).__name__}")
    if not isinstance(test_sets, Mapping) or not test_sets:
        raise ValueError("test_sets must be a non-empty dict of task name -> Dataset")
    check_int("batch_size", batch_size, minimum=1)
    device = get_device(device)
    model.to(device).eval()
    scores = {}
    for task, data in test_sets.items():
        check_choice("task", task, model.tasks)
        if len(data) == 0:
            raise ValueError(f"test_sets[{task!r}] is empty: expected at least one example")
        correct = 0
        for start in range(0, len(data), batch_size):
            index = torch.arange(start, min(start + batch_size, len(data)))
            x, y = _sample(data, index)
            features = model.encoder(x.to(device))
            pred = model.heads[task](features).argmax(dim=1).cpu()
            correct += int((pred == y).sum())
        scores[task] = correct / len(data)
    return scores
