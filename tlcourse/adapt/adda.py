"""Adversarial Discriminative Domain Adaptation (ADDA, Tzeng et al., 2017).

Two stages instead of DANN's single joint objective:

1. **Pre-train** a source encoder ``M_s`` and classifier ``C`` on the labelled source
   (plain source-only training, e.g. :func:`tlcourse.adapt.loop.train_adaptation` without a
   transfer loss).
2. **Adapt**: a *separate* target encoder ``M_t``, initialised from ``M_s``, plays a GAN against
   a feature discriminator ``D`` while ``M_s`` and ``C`` stay frozen (book Eq. (6.11)):

       min_D  −E_s[log D(M_s(x_s))] − E_t[log(1 − D(M_t(x_t)))]
       min_Mt −E_t[log D(M_t(x_t))]              (the GAN loss with inverted labels)

   Target images are then classified by ``C(M_t(x))``.

Untied weights let the target encoder change more than DANN's shared one; the inverted-label
loss gives stronger gradients than gradient reversal (it is the non-saturating GAN loss).
Because ``M_t`` only ever sees target batches, its batch-norm statistics are target statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.loop import as_tensors, epoch_range, paired_batches
from tlcourse.adapt.nets import DomainDiscriminator
from tlcourse.checks import check_feature_pair, check_int, check_positive
from tlcourse.train import History
from tlcourse.utils import get_device

__all__ = ["adda_discriminator_loss", "adda_step", "train_adda"]


def adda_discriminator_loss(d_source: torch.Tensor, d_target: torch.Tensor) -> torch.Tensor:
    """``½ BCE(d_source, 1) + ½ BCE(d_target, 0)`` on discriminator logits."""
    return 0.5 * (
        F.binary_cross_entropy_with_logits(d_source, torch.ones_like(d_source))
        + F.binary_cross_entropy_with_logits(d_target, torch.zeros_like(d_target))
    )


def adda_step(
    source_encoder: nn.Module,
    target_encoder: nn.Module,
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    opt_t: torch.optim.Optimizer,
    xs: torch.Tensor,
    xt: torch.Tensor,
    d_steps: int = 1,
) -> dict[str, float]:
    """One ADDA adaptation step: ``d_steps`` discriminator updates, then one target-encoder update.

    ``source_encoder`` is used frozen (eval mode, no gradients). Returns ``loss_d``, ``loss_t``
    (the target encoder's inverted-label loss) and ``d_accuracy``.
    """
    d_steps = check_int("d_steps", d_steps, minimum=1)
    if len(xs) == 0 or len(xt) == 0:
        raise ValueError(f"xs and xt must be non-empty batches, got {len(xs)} and {len(xt)} images")
    source_encoder.eval()
    target_encoder.train()
    discriminator.train()
    with torch.no_grad():
        f_s = source_encoder(xs)
    f_t = target_encoder(xt)
    check_feature_pair(f_s, f_t)
    for _ in range(d_steps):
        d_s, d_t = discriminator(f_s), discriminator(f_t.detach())
        loss_d = adda_discriminator_loss(d_s, d_t)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    d_t = discriminator(f_t)
    loss_t = F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t))  # inverted labels
    opt_t.zero_grad(set_to_none=True)
    loss_t.backward()
    opt_t.step()
    with torch.no_grad():
        acc = 0.5 * ((d_s > 0).float().mean() + (d_t < 0).float().mean())
    return {"loss_d": loss_d.item(), "loss_t": loss_t.item(), "d_accuracy": acc.item()}


def train_adda(
    source_model: nn.Module,
    source: Any,
    target: Any,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-4,
    lr_d: float | None = None,
    d_steps: int = 1,
    discriminator: nn.Module | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool = False,
    callback: Callable[[int, nn.Module], dict[str, float]] | None = None,
) -> tuple[nn.Module, History, nn.Module]:
    """Stage 2 of ADDA for a source-trained ``source_model`` (with ``backbone`` and ``head``).

    Adam with ``β = (0.5, 0.999)`` and ``lr = 2e-4`` as in Tzeng et al.; the discriminator
    defaults to two hidden layers of 500 units, as in the paper. Target labels are never read
    (``source`` labels are not needed either: only its images are used).

    Returns ``(target_model, history, discriminator)``: ``target_model`` is a copy of
    ``source_model`` whose backbone is the adapted target encoder (same frozen head).
    """
    if not (hasattr(source_model, "backbone") and hasattr(source_model, "head")):
        raise TypeError("source_model must have a .backbone and a .head (train it on the source first)")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_positive("lr", lr)
    lr_d = lr if lr_d is None else check_positive("lr_d", lr_d)
    xs_all, _ = as_tensors("source", source, labelled=False)
    xt_all, _ = as_tensors("target", target, labelled=False)
    dev = get_device(device)
    source_model.to(dev).eval()
    target_model = copy.deepcopy(source_model)
    for p in source_model.parameters():
        p.requires_grad_(False)
    for p in target_model.head.parameters():
        p.requires_grad_(False)
    if discriminator is None:
        feature_dim = getattr(source_model.backbone, "feature_dim", None)
        if feature_dim is None:
            raise ValueError("pass a discriminator, or a model whose backbone has a feature_dim")
        discriminator = DomainDiscriminator(int(feature_dim), hidden=(500, 500))
    discriminator.to(dev)
    opt_t = torch.optim.Adam(target_model.backbone.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.initial_seed() % 2**63))
    if seed is not None:
        torch.manual_seed(seed)
    history = History()
    try:
        for epoch in epoch_range(epochs, progress):
            sums: dict[str, float] = {}
            steps = 0
            for idx_s, idx_t in paired_batches(len(xs_all), len(xt_all), batch_size, gen):
                out = adda_step(
                    source_model.backbone,
                    target_model.backbone,
                    discriminator,
                    opt_d,
                    opt_t,
                    xs_all[idx_s].to(dev, non_blocking=True),
                    xt_all[idx_t].to(dev, non_blocking=True),
                    d_steps,
                )
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            record = {"epoch": float(epoch + 1), **{k: v / steps for k, v in sums.items()}}
            if callback is not None:
                record.update(callback(epoch + 1, target_model))
            history.records.append(record)
    finally:
        for p in source_model.parameters():
            p.requires_grad_(True)
        for p in target_model.parameters():
            p.requires_grad_(True)
    target_model.eval()
    discriminator.eval()
    return target_model, history, discriminator
