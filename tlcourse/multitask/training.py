"""Training several tasks at once: one labelled batch per task per step (Section 5.3).

:func:`fit_multitask` is a manual step on the engine (:class:`~tlcourse.train.engine.Engine`):
the weighting, not the engine, back-propagates (PCGrad and GradNorm build the gradient from
per-task gradients), with the engine's loss scale. Under ``torchrun`` each process draws its
slice of every task's global batch; PCGrad and GradNorm all-reduce what they need (see their
``backward``), DWA averages its epoch losses over the processes, and the engine averages the
gradients before each optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive
from tlcourse.distributed import all_reduce_mean
from tlcourse.multitask.gradients import cosine_matrix, task_gradients
from tlcourse.multitask.model import MultiTaskModel, _check_task_names
from tlcourse.multitask.weightings import PCGrad, Weighting, make_weighting
from tlcourse.train import Engine, History
from tlcourse.train.engine import check_engine_options
from tlcourse.train.loaders import RandomBatches, fetch

__all__ = ["MultiTaskHistory", "fit_multitask", "sample_batch"]


class MultiTaskHistory(History):
    """What :func:`fit_multitask` records: a :class:`~tlcourse.train.History` with per-step views.

    Per epoch, ``records`` hold the mean ``loss/<task>`` and ``weight/<task>`` (and PCGrad's
    ``conflicts`` and ``min_projected_cosine``). Per step: :attr:`losses`, :attr:`weights`,
    :attr:`conflicts`, :attr:`min_projected_cosine`; the task-gradient cosine matrices recorded
    every ``track_cosine_every`` steps are :attr:`cosines` (at :attr:`cosine_steps`).
    """

    def __init__(self, tasks: tuple[str, ...], history: History, cosine_steps: list[int],
                 cosines: list[torch.Tensor]) -> None:
        super().__init__(history.records, history.best_epoch, history.steps, history.seconds)
        self.tasks, self.cosine_steps, self.cosines = tasks, cosine_steps, cosines

    @property
    def losses(self) -> dict[str, list[float]]:
        return {t: self.steps[f"loss/{t}"] for t in self.tasks}

    @property
    def weights(self) -> dict[str, list[float]]:
        return {t: self.steps[f"weight/{t}"] for t in self.tasks}

    @property
    def conflicts(self) -> list[int]:
        return [int(c) for c in self.steps.get("conflicts", [])]

    @property
    def min_projected_cosine(self) -> list[float]:
        return self.steps.get("min_projected_cosine", [])

    def cosine(self, task_a: str, task_b: str) -> list[float]:
        """The recorded gradient cosine between two tasks, one value per entry of ``cosine_steps``."""
        i = self.tasks.index(check_choice("task_a", task_a, self.tasks))
        j = self.tasks.index(check_choice("task_b", task_b, self.tasks))
        return [float(c[i, j]) for c in self.cosines]


def sample_batch(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples ``index`` of ``dataset`` as one ``(inputs, labels)`` batch."""
    inputs, labels, *_ = fetch(dataset, index)
    return inputs, labels


class _CosineLog:
    """Task-gradient cosine matrices kept on the device, checkpointed with the run."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.matrices: list[torch.Tensor] = []

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "matrices": [m.cpu() for m in self.matrices]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps, self.matrices = list(state["steps"]), list(state["matrices"])


def _check_multitask(model: Any, train_sets: Any, weighting: Any, batch_size: Any, loss_fns: Any,
                     track_cosine_every: Any) -> tuple[tuple[str, ...], dict[str, int], Weighting, dict]:
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
    return tasks, sizes, weighting, loss_fns


def multitask_step(net: Any, weighting: Weighting, optimizer: torch.optim.Optimizer, tasks: tuple[str, ...],
                   loss_fns: Mapping[str, Callable], get_shared: Callable[[], list[torch.Tensor]],
                   steps_per_epoch: int, track_every: int | None, log: _CosineLog) -> Callable:
    """The engine step of :func:`fit_multitask`: Eq. (5.1) with the weighting's backward."""

    def step(batch: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        outputs = net({t: batch[t][0] for t in tasks})
        losses = {t: loss_fns.get(t, F.cross_entropy)(outputs[t], batch[t][1]) for t in tasks}
        index = ctx.epoch * steps_per_epoch + ctx.index
        if track_every is not None and index % track_every == 0 and len(tasks) > 1:
            log.steps.append(index)  # cosines of the global batch's task gradients, before the update
            log.matrices.append(cosine_matrix(all_reduce_mean(task_gradients(losses, get_shared()))).detach())
        ctx.zero_grad(optimizer)
        weights = weighting.backward(losses, shared_parameters=get_shared(), loss_scale=ctx.loss_scale,
                                     as_tensors=True)
        ctx.step(optimizer)
        out: dict[str, Any] = {f"loss/{t}": losses[t].detach() for t in tasks}
        out.update({f"weight/{t}": weights[t] for t in tasks})
        if isinstance(weighting, PCGrad):
            out["conflicts"], out["min_projected_cosine"] = weighting.num_conflicts, weighting.min_projected_cosine
        return out

    return step


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
    progress: bool = False,
    **engine_options: Any,
) -> MultiTaskHistory:
    """Train ``model`` on several labelled sets at once, one batch per task per step.

    Each task has its own training set (tasks need not be labelled on the same images; a
    low-data task simply has a small set, sampled with replacement). A step draws
    ``batch_size`` examples per task (per process), runs the encoder once on all of them
    (``model({task: x})``), computes each task's loss (cross-entropy unless ``loss_fns`` says
    otherwise) and calls ``weighting.backward``, then takes an AdamW step on the model and the
    weighting's parameters. Every ``steps_per_epoch`` steps ``weighting.end_epoch()`` is
    called. With ``track_cosine_every=n`` the task-gradient cosine matrix is recorded every
    ``n`` steps (:func:`gradient_cosine`, before the update). This is the loop of Section 5.3
    written once; a single-task baseline is the same call with one head and one set.
    ``engine_options`` go to the engine (``amp``, ``channels_last``, ``compile``,
    ``accumulate``, ``grad_clip``, ``sync_batchnorm``, ``checkpoint``, ``resume``,
    ``nan_check_every``). Returns a :class:`MultiTaskHistory`.
    """
    tasks, sizes, weighting, loss_fns = _check_multitask(model, train_sets, weighting, batch_size, loss_fns,
                                                         track_cosine_every)
    check_int("steps", steps, minimum=1)
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_positive("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    options = check_engine_options(engine_options)
    if seed is not None:
        from tlcourse.utils import seed_everything

        seed_everything(seed)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    extra = [p for p in weighting.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": weighting_lr or lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    loader = RandomBatches({t: train_sets[t] for t in tasks}, sizes, steps_per_epoch, generator, total=steps)
    log = _CosineLog()
    engine = Engine({"model": model, "weighting": weighting}, {"optimizer": optimizer}, device=device,
                    progress=progress, desc="multitask", trace=True, state={"cosines": log}, **options)
    net = engine.prepare(model)
    get_shared = (lambda: list(shared_parameters(model))) if shared_parameters else model.shared_parameters
    step = multitask_step(net, weighting, optimizer, tasks, loss_fns, get_shared, steps_per_epoch,
                          track_cosine_every, log)

    def at_epoch_end(epoch: int) -> dict[str, float]:
        if (epoch + 1) * steps_per_epoch <= steps:  # a full epoch of steps
            weighting.end_epoch()
        return {}

    history = engine.run(loader, step, epochs=-(-steps // steps_per_epoch), manual=True, at_epoch_end=at_epoch_end)
    model.eval()
    return MultiTaskHistory(tasks, history, log.steps, [m.cpu() for m in log.matrices])
