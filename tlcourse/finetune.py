"""Fine-tuning recipes: freezing, discriminative learning rates, gradual unfreezing, L2-SP.

All work on any ``nn.Module`` whose parts are reachable by name (``"backbone.layer3"``,
``"head"``); the course's :class:`~tlcourse.models.SmallResNet` names its stages
``backbone.stem``, ``backbone.layer1..3`` and ``head``.

* Linear probe (feature extraction): freeze the whole backbone, train the new head.
* Partial fine-tuning: freeze the lower stages, train the top ones and the head.
* Full fine-tuning: train everything, usually with a smaller learning rate.
* Discriminative rates (Howard & Ruder 2018): lower rates for lower layers, Eq. (2.9).
* Gradual unfreezing (Howard & Ruder 2018): unfreeze one stage per phase, top first.
* L2-SP (Li et al. 2018): pull weights toward the pretrained ones instead of zero, Eq. (2.8).

``count_parameters`` (from :mod:`tlcourse.utils`) and ``extract_features`` (from
:mod:`tlcourse.train.features`) are re-exported here, where fine-tuning code looks for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tlcourse.checks import check_finite, check_int, check_labels, check_non_negative, check_positive, check_tensor
from tlcourse.train import History, fit
from tlcourse.train.features import extract_features
from tlcourse.utils import count_parameters

__all__ = [
    "STAGES",
    "count_parameters",
    "freeze",
    "unfreeze",
    "trainable_stages",
    "discriminative_param_groups",
    "gradual_unfreezing",
    "L2SPLoss",
    "extract_features",
]

#: Stages of the course models from the input to the output.
STAGES: tuple[str, ...] = ("backbone.stem", "backbone.layer1", "backbone.layer2", "backbone.layer3", "head")

_BN_HOOK = "_tlcourse_frozen_bn_hook"


def _get(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"model has no submodule {name!r}; top-level children are {names}") from None


def _keep_bn_in_eval(module: nn.Module, _inputs: Any) -> None:
    module.training = False


def freeze(model: nn.Module, names: Iterable[str] | None = None, bn_eval: bool = True) -> nn.Module:
    """Stop gradients for ``names`` (all of ``model`` if ``None``); returns ``model``.

    With ``bn_eval=True`` the frozen batch-norm layers also stop updating their running
    statistics: they stay in eval mode even when ``model.train()`` is called. Forgetting this is
    a classic fine-tuning bug: "frozen" layers silently drift toward the small target batches.
    """
    modules = [model] if names is None else [_get(model, n) for n in names]
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(False)
        if bn_eval:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not hasattr(m, _BN_HOOK):
                    setattr(m, _BN_HOOK, m.register_forward_pre_hook(_keep_bn_in_eval))
                    m.eval()
    return model


def unfreeze(model: nn.Module, names: Iterable[str] | None = None) -> nn.Module:
    """Let gradients flow again through ``names`` (all of ``model`` if ``None``)."""
    modules = [model] if names is None else [_get(model, n) for n in names]
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(True)
        for m in module.modules():
            handle = getattr(m, _BN_HOOK, None)
            if handle is not None:
                handle.remove()
                delattr(m, _BN_HOOK)
                m.train(model.training)
    return model


def trainable_stages(model: nn.Module, train_top: int, stages: Sequence[str] = STAGES) -> nn.Module:
    """Freeze everything, then unfreeze the top ``train_top`` stages (the head counts as one).

    ``train_top=1`` is a linear probe, ``train_top=len(stages)`` is full fine-tuning.
    """
    check_int("train_top", train_top, minimum=1)
    if train_top > len(stages):
        raise ValueError(f"train_top must be <= {len(stages)} (the number of stages), got {train_top}")
    freeze(model)
    return unfreeze(model, stages[len(stages) - train_top:])


def discriminative_param_groups(
    model: nn.Module, lr: float, decay: float = 0.5, stages: Sequence[str] = STAGES, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with rate ``lr·decay^d`` for a stage ``d`` steps below the top.

    Eq. (2.9): the head learns at ``lr``; each stage below learns ``decay`` times slower, so the
    general low-level features change least. Frozen parameters are left out.
    """
    check_positive("lr", lr)
    check_positive("decay", decay)
    if decay > 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    check_non_negative("weight_decay", weight_decay)
    groups = []
    seen: set[int] = set()
    for depth, name in enumerate(reversed(stages)):
        params = [p for p in _get(model, name).parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": lr * decay**depth, "weight_decay": weight_decay, "name": name})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": lr * decay ** len(stages), "weight_decay": weight_decay, "name": "other"})
    if not groups:
        raise ValueError("model has no trainable parameters in the given stages")
    return groups


def gradual_unfreezing(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    *,
    epochs_per_stage: int = 1,
    lr: float = 1e-3,
    decay: float = 0.5,
    stages: Sequence[str] = STAGES,
    **fit_kwargs: Any,
) -> History:
    """Train the head first, then unfreeze one more stage per phase (top down), ULMFiT style.

    Each phase is a :func:`~tlcourse.train.fit` call with discriminative rates over the stages
    unfrozen so far; the histories are concatenated.
    """
    check_int("epochs_per_stage", epochs_per_stage, minimum=1)
    history = History()
    for top in range(1, len(stages) + 1):
        trainable_stages(model, top, stages)
        optimizer = torch.optim.AdamW(discriminative_param_groups(model, lr, decay, stages))
        phase = fit(model, train_data, epochs=epochs_per_stage, optimizer=optimizer, **fit_kwargs)
        offset = len(history.records)
        history.records.extend({**r, "epoch": r["epoch"] + offset, "stages": top} for r in phase.records)
    return history


class L2SPLoss(nn.Module):
    """Cross-entropy plus the L2-SP penalty (Li et al. 2018), Eq. (2.8).

    ``Ω(w) = α/2 ‖w_S − w_S⁰‖² + β/2 ‖w_new‖²``: the transferred weights ``w_S`` are pulled toward
    their pretrained values ``w_S⁰`` (not toward zero as weight decay would), new layers get
    ordinary weight decay. Use it as ``fit(..., loss_fn=L2SPLoss(model, alpha, beta))``.

    Args:
        model: the model being fine-tuned; its current weights are the starting point ``w⁰``.
        alpha: strength of the pull toward the pretrained weights.
        beta: weight decay of the new parameters (those whose name starts with ``new_prefix``).
        new_prefix: name prefix of the freshly initialised layers (the head).
    """

    def __init__(self, model: nn.Module, alpha: float = 0.01, beta: float = 0.01, new_prefix: str = "head") -> None:
        super().__init__()
        check_non_negative("alpha", alpha)
        check_non_negative("beta", beta)
        self.alpha, self.beta = alpha, beta
        self._model = [model]  # not a submodule: no double registration
        self.new_prefix = new_prefix
        self.reference = {
            name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith(new_prefix)
        }
        if not self.reference:
            raise ValueError(f"model has no pretrained parameters outside {new_prefix!r}")

    def penalty(self) -> torch.Tensor:
        model = self._model[0]
        sp = new = None
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name in self.reference:
                ref = self.reference[name].to(p.device)
                term = (p - ref).pow(2).sum()
                sp = term if sp is None else sp + term
            elif name.startswith(self.new_prefix):
                term = p.pow(2).sum()
                new = term if new is None else new + term
        zero = next(model.parameters()).new_zeros(())
        sp, new = (sp if sp is not None else zero), (new if new is not None else zero)
        return 0.5 * self.alpha * sp + 0.5 * self.beta * new

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_tensor("logits", logits, ndim=2, dtype="float")
        check_labels("labels", labels, num_classes=logits.shape[1])
        if len(labels) != len(logits):
            raise ValueError(f"logits and labels must have the same length, got {len(logits)} and {len(labels)}")
        check_finite("logits", logits)
        return F.cross_entropy(logits, labels) + self.penalty()
