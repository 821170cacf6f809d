"""Scoring multi-task models: per-task accuracy and the relative multi-task gain, Eq. (5.6)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset

from tlcourse.checks import check_choice, check_int
from tlcourse.multitask.model import MultiTaskModel
from tlcourse.multitask.training import sample_batch

__all__ = ["relative_gain", "evaluate_multitask"]


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
            x, y = sample_batch(data, index)
            features = model.encoder(x.to(device))
            pred = model.heads[task](features).argmax(dim=1).cpu()
            correct += int((pred == y).sum())
        scores[task] = correct / len(data)
    return scores
