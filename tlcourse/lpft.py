"""LP-FT (linear probe, then fine-tune) and a warm-up + cosine schedule, for the practical page.

Kumar et al. (2022) show that fine-tuning a pretrained network whose new head is *random*
distorts the pretrained features: early gradients through a random head push the backbone
toward whatever fits that head. Their remedy, **LP-FT**, first fits the head on frozen features
(a linear probe), then fine-tunes everything from there, so the backbone starts from a head that
already agrees with it.

* :func:`probe_to_head` turns a fitted scikit-learn probe (``StandardScaler`` + logistic
  regression, as :func:`tlcourse.budget.tune_probe` fits) into the weights of the model's
  linear head: ``W' = W / σ``, ``b' = b − W' μ``, so ``head(features)`` equals the probe's
  decision function.
* :func:`warmup_cosine` is the learning-rate schedule most fine-tuning recipes use: linear
  warm-up from 0 over ``warmup`` steps, then a cosine decay to 0 at ``total`` steps.
* :func:`finetune` trains every weight with AdamW, that schedule and early stopping on
  validation (the best weights are restored).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tlcourse.checks import check_int, check_positive
from tlcourse.train import History, fit

__all__ = ["probe_to_head", "warmup_cosine", "finetune"]


def probe_to_head(probe: Any, head: nn.Linear) -> nn.Linear:
    """Copy a fitted ``make_pipeline(StandardScaler(), LogisticRegression())`` into ``head`` (in place)."""
    if not isinstance(head, nn.Linear):
        raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}")
    steps = getattr(probe, "named_steps", None)
    if steps is None or len(steps) != 2:
        raise TypeError("probe must be a fitted pipeline of StandardScaler and LogisticRegression")
    scaler, clf = list(steps.values())
    coef, intercept = np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row; the softmax form needs two
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    if coef.shape != tuple(head.weight.shape):
        raise ValueError(f"the probe has {coef.shape} weights but the head expects {tuple(head.weight.shape)}")
    w = coef / scaler.scale_
    b = intercept - w @ scaler.mean_
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))
    return head


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at step ``total`` (step it every batch)."""
    check_int("total", total, minimum=1)
    check_int("warmup", warmup, minimum=0)
    if warmup >= total:
        raise ValueError(f"warmup must be smaller than total ({total}), got {warmup}")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def finetune(model: nn.Module, train: Dataset, val: Dataset, *, lr: float, epochs: int, batch_size: int = 16,
             warmup_fraction: float = 0.1, patience: int = 3, weight_decay: float = 1e-4, seed: int = 0) -> History:
    """Fine-tune every trainable weight: AdamW, warm-up + cosine per step, early stopping on ``val``."""
    check_positive("lr", lr)
    check_int("epochs", epochs, minimum=1)
    steps_per_epoch = math.ceil(len(train) / batch_size)  # type: ignore[arg-type]
    total = epochs * steps_per_epoch
    warmup = min(total - 1, int(warmup_fraction * total))
    return fit(model, train, epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, val_data=val,
               scheduler=lambda opt: warmup_cosine(opt, total, warmup), scheduler_interval="step",
               early_stopping=patience, monitor="val_loss", seed=seed, progress=False)
