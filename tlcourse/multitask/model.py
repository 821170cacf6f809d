"""Hard parameter sharing: one shared encoder, one head per task (Caruana, 1997), Eq. (5.1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from tlcourse.checks import check_choice

__all__ = ["MultiTaskModel"]


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
