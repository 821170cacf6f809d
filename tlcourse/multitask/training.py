"""Training several tasks at once: one labelled batch per task per step (Section 5.3)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive
from tlcourse.multitask.gradients import gradient_cosine
from tlcourse.multitask.model import MultiTaskModel, _check_task_names
from tlcourse.multitask.weightings import PCGrad, Weighting, make_weighting

__all__ = ["MultiTaskHistory", "fit_multitask", "sample_batch"]


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


def sample_batch(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples ``index`` of ``dataset`` as one ``(inputs, labels)`` batch."""
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
            x, y = sample_batch(train_sets[task], index)
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
