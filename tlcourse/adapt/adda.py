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

:func:`adda_update` is one adaptation step written once; :func:`adda_step` runs it in your own
loop and :func:`train_adda` on the engine (a manual step: two optimizers alternate).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.loop import feature_parts, head_parameters
from tlcourse.adapt.nets import DomainDiscriminator
from tlcourse.checks import check_feature_pair, check_finite, check_int, check_positive, check_tensor
from tlcourse.train import Engine, History
from tlcourse.train.engine import PlainContext, check_engine_options
from tlcourse.train.loaders import as_dataset, paired_loader
from tlcourse.utils import get_device

__all__ = ["adda_discriminator_loss", "adda_update", "adda_step", "train_adda"]


def adda_discriminator_loss(d_source: torch.Tensor, d_target: torch.Tensor) -> torch.Tensor:
    """``½ BCE(d_source, 1) + ½ BCE(d_target, 0)`` on discriminator logits."""
    for name, d in (("d_source", d_source), ("d_target", d_target)):
        check_tensor(name, d, dtype="float")
        if d.numel() == 0:
            raise ValueError(f"{name} is empty: the discriminator loss needs at least one logit per domain "
                             "(a mean over an empty batch is NaN)")
        check_finite(name, d)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(d_source, torch.ones_like(d_source))
        + F.binary_cross_entropy_with_logits(d_target, torch.zeros_like(d_target))
    )


def adda_update(
    ctx: Any,
    source_encoder: nn.Module,
    target_encoder: nn.Module,
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    opt_t: torch.optim.Optimizer,
    xs: torch.Tensor,
    xt: torch.Tensor,
    d_steps: int = 1,
) -> dict[str, torch.Tensor]:
    """One ADDA adaptation step, Eq. (6.11): ``d_steps`` discriminator updates, then one target-encoder update.

    ``ctx`` does the backward passes and optimizer steps (:class:`~tlcourse.train.engine.PlainContext`
    in your loop, the engine's context in :func:`train_adda`). ``source_encoder`` is used frozen
    (no gradients). Returns ``loss_d``, ``loss_t`` (the target encoder's inverted-label loss) and
    ``d_accuracy`` as tensors.
    """
    if len(xs) == 0 or len(xt) == 0:
        raise ValueError(f"xs and xt must be non-empty batches, got {len(xs)} and {len(xt)} images")
    with torch.no_grad():
        f_s = source_encoder(xs)
    f_t = target_encoder(xt)
    check_feature_pair(f_s, f_t)
    for _ in range(d_steps):
        d_s, d_t = discriminator(f_s), discriminator(f_t.detach())
        loss_d = adda_discriminator_loss(d_s, d_t)
        ctx.zero_grad(opt_d)
        ctx.backward(loss_d)
        ctx.step(opt_d)
    d_t = discriminator(f_t)
    loss_t = F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t))  # inverted labels
    ctx.zero_grad(opt_t)
    ctx.backward(loss_t)
    ctx.step(opt_t)
    with torch.no_grad():
        acc = 0.5 * ((d_s > 0).float().mean() + (d_t < 0).float().mean())
    return {"loss_d": loss_d.detach(), "loss_t": loss_t.detach(), "d_accuracy": acc}


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
    """:func:`adda_update` in your own loop (eval mode for the source encoder); metrics as floats."""
    d_steps = check_int("d_steps", d_steps, minimum=1)
    source_encoder.eval()
    target_encoder.train()
    discriminator.train()
    out = adda_update(PlainContext(), source_encoder, target_encoder, discriminator, opt_d, opt_t, xs, xt, d_steps)
    return {k: float(v) for k, v in out.items()}


def _freeze_for_adda(source_model: nn.Module, target_model: nn.Module) -> Callable[[], None]:
    """Freeze the source model and the target model's head; returns the undo function."""
    for p in source_model.parameters():
        p.requires_grad_(False)
    for p in head_parameters(target_model):
        p.requires_grad_(False)

    def undo() -> None:
        for p in list(source_model.parameters()) + list(target_model.parameters()):
            p.requires_grad_(True)

    return undo


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
    **engine_options: Any,
) -> History:
    """Stage 2 of ADDA for a source-trained ``source_model`` (features and logits: see
    :func:`~tlcourse.adapt.loop.feature_parts`).

    Adam with ``β = (0.5, 0.999)`` and ``lr = 2e-4`` as in Tzeng et al.; the discriminator
    defaults to two hidden layers of 500 units, as in the paper. Target labels are never read
    (``source`` labels are not needed either: only its images are used). ``batch_size`` is per
    process; ``engine_options`` go to the engine (``amp``, ``channels_last``, ``compile``,
    ``grad_clip``, ``sync_batchnorm``, ``checkpoint``, ``resume``, ``nan_check_every``).

    Returns the :class:`~tlcourse.train.History` (``loss_d``, ``loss_t``, ``d_accuracy`` per
    epoch, plus ``callback(epoch, target_model)``'s entries). The adapted model is
    ``history.target_model``: a copy of ``source_model`` whose encoder is the adapted target
    encoder (same frozen head); the trained discriminator is ``history.discriminator``.
    """
    source_features, _ = feature_parts(source_model)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    d_steps = check_int("d_steps", d_steps, minimum=1)
    check_positive("lr", lr)
    lr_d = lr if lr_d is None else check_positive("lr_d", lr_d)
    options = check_engine_options(engine_options, [k for k in ("amp", "channels_last", "compile", "grad_clip",
                                                                "sync_batchnorm", "checkpoint", "resume",
                                                                "nan_check_every")])
    source, target = as_dataset("source", source, labelled=False), as_dataset("target", target, labelled=False)
    dev = get_device(device)
    source_model.to(dev).eval()
    target_model = copy.deepcopy(source_model)
    target_features, _ = feature_parts(target_model)
    if discriminator is None:
        feature_dim = getattr(getattr(source_model, "backbone", None), "feature_dim",
                              getattr(source_model, "num_features", None))
        if feature_dim is None:
            raise ValueError("pass a discriminator, or a model whose backbone has a feature_dim")
        discriminator = DomainDiscriminator(int(feature_dim), hidden=(500, 500))
    undo = _freeze_for_adda(source_model, target_model)
    opt_t = torch.optim.Adam([p for p in target_model.parameters() if p.requires_grad], lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.initial_seed() % 2**63))
    if seed is not None:
        torch.manual_seed(seed)
    engine = Engine({"source": source_model, "target": target_model, "discriminator": discriminator},
                    {"discriminator": opt_d, "target": opt_t}, frozen=("source",), device=dev, progress=progress,
                    desc="adda", **options)
    encoders = engine.prepare(source_features), engine.prepare(target_features)

    def step(batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        (xs, *_), (xt, *_) = batch
        return adda_update(ctx, *encoders, discriminator, opt_d, opt_t, xs, xt, d_steps)

    def at_epoch_end(epoch: int) -> dict[str, float]:
        return callback(epoch + 1, target_model) if callback is not None else {}

    try:
        history = engine.run(paired_loader(source, target, batch_size, gen), step, epochs=epochs, manual=True,
                             at_epoch_end=at_epoch_end)
    finally:
        undo()
    target_model.eval()
    discriminator.eval()
    history.target_model, history.discriminator = target_model, discriminator
    return history
