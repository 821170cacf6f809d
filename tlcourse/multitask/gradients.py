"""Task gradients on the shared parameters: their cosines (conflicts) and PCGrad's projection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

__all__ = ["task_gradients", "gradient_cosine", "cosine_matrix", "pcgrad_project"]


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
    # No finiteness check here: it would make the host wait for the device at every step. The
    # training engine checks the losses (every step on a CPU, every few steps on accelerators).


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
    return cosine_matrix(task_gradients(losses, shared_parameters, retain_graph=retain_graph))


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the rows of ``vectors``: ``(K, K)``."""
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T


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
        others = [j for j in torch.randperm(k, generator=generator).tolist() if j != i]  # a CPU draw
        for j in others:
            dot = torch.dot(projected[i], grads[j])
            # "if g_i · g_j < 0" without asking the device: the coefficient is 0 when there is no conflict
            coef = torch.where((dot < 0) & (sq_norms[j] > 0), dot / sq_norms[j].clamp_min(1e-30), 0.0)
            projected[i] -= coef * grads[j]
    return projected


def _min_pairwise_cosine(vectors: torch.Tensor) -> torch.Tensor:
    """Smallest cosine similarity between two different rows (1.0 for a single row), as a tensor."""
    if len(vectors) < 2:
        return vectors.new_ones(())
    i, j = torch.triu_indices(len(vectors), len(vectors), offset=1)
    return cosine_matrix(vectors)[i, j].min()
