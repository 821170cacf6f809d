"""One training loop for every feature-level adaptation method (source-only, MMD, CORAL, DANN).

Feature-level unsupervised domain adaptation minimises (book Eq. (6.5))

    L = (1/n_s) Σ CE(h(g(x_s)), y_s) + trade_off · D(g(X_s), g(X_t)),

the classification loss on labelled source images plus a *transfer loss* ``D`` that measures how
far apart the source and target features are: an MMD (Long et al., 2015), the CORAL distance
(Sun & Saenko, 2016) or the loss of a domain discriminator behind a gradient reversal layer
(Ganin et al., 2016). Each is a plain ``nn.Module`` called as ``transfer_loss(f_s, f_t)``, so
the loop below is the whole recipe and a user can copy :func:`adaptation_step` into their own.

Target labels are never read: ``target`` is a tensor of images (or a dataset whose labels are
ignored).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.grl import dann_lr_scheduler
from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive, check_tensor
from tlcourse.train import History
from tlcourse.train.features import extract_features
from tlcourse.utils import get_device

__all__ = [
    "as_tensors",
    "epoch_range",
    "paired_batches",
    "make_optimizer",
    "adaptation_step",
    "train_adaptation",
    "extract_features",
    "accuracy_on",
]


def as_tensors(name: str, data: Any, labelled: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)`` from a dataset with ``.images``/``.labels``, a tuple, or a tensor.

    With ``labelled=False`` the labels (if any) are dropped: that is how target data enter.
    """
    labels = None
    if isinstance(data, torch.Tensor):
        images = data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    elif hasattr(data, "images"):
        images, labels = data.images, getattr(data, "labels", None)
    else:
        raise TypeError(
            f"{name} must be an ArrayDataset, an (images, labels) tuple or an image tensor, got {type(data).__name__}"
        )
    check_tensor(f"{name} images", images, ndim=4, dtype="float")
    if len(images) == 0:
        raise ValueError(f"{name} is empty: expected at least one image")
    if not labelled:
        return images, None
    if labels is None:
        raise ValueError(f"{name} must carry labels (an ArrayDataset or an (images, labels) tuple)")
    labels = torch.as_tensor(labels)
    check_tensor(f"{name} labels", labels, ndim=1, dtype="int")
    if len(labels) != len(images):
        raise ValueError(f"{name} images and labels must have the same length, got {len(images)} and {len(labels)}")
    return images, labels.long()


def epoch_range(epochs: int, progress: bool = False) -> Iterable[int]:
    """``range(epochs)``, wrapped in a ``tqdm.auto`` progress bar when ``progress`` is true."""
    if not progress:
        return range(epochs)
    from tqdm.auto import tqdm

    return tqdm(range(epochs), desc="epochs")


def paired_batches(
    n_source: int, n_target: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Index pairs ``(source_idx, target_idx)`` for one epoch over the source set.

    The source is shuffled and cut into ``n_source // batch_size`` full batches; target indices
    come from a shuffled pass over the target set, restarted whenever it runs out.
    """
    check_int("n_source", n_source, minimum=1)
    check_int("n_target", n_target, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    steps = max(1, n_source // batch_size)
    perm_s = torch.randperm(n_source, generator=generator)
    needed = steps * batch_size
    perm_t = torch.cat([torch.randperm(n_target, generator=generator) for _ in range(math.ceil(needed / n_target))])
    for i in range(steps):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        yield perm_s[sl], perm_t[sl]


def make_optimizer(
    params: Any, optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``"adam"`` or ``"sgd"`` (with momentum, as in Ganin et al.) over ``params``."""
    check_choice("optimizer", optimizer, ("adam", "sgd"))
    check_positive("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def adaptation_step(
    model: nn.Module,
    transfer_loss: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    xt: torch.Tensor | None = None,
    trade_off: float = 1.0,
    concat: bool = False,
) -> dict[str, float]:
    """One step of book Eq. (6.5): ``CE(head(f_s), y_s) + trade_off · transfer_loss(f_s, f_t)``.

    ``model`` must have a ``backbone`` (images → features) and a ``head`` (features → logits).
    With ``concat=False`` (default) the source and target batches go through the backbone
    separately, so every batch-norm layer normalises each domain with its own statistics (the
    training-time side of AdaBN; evaluate with :func:`tlcourse.adapt.adabn.adapt_batchnorm`).
    ``concat=True`` feeds one mixed batch, as in the original DANN.
    ``transfer_loss=None`` is plain source-only training (``xt`` is then ignored).

    Returns the step's ``loss``, ``cls_loss``, ``transfer_loss`` and ``source_accuracy`` (and the
    ``discriminator_accuracy`` of an adversarial transfer loss).
    """
    if not (hasattr(model, "backbone") and hasattr(model, "head")):
        raise TypeError("model must have a .backbone (images → features) and a .head (features → logits)")
    check_non_negative("trade_off", trade_off)
    model.train()
    if transfer_loss is None:
        fs, ft = model.backbone(xs), None
    else:
        if xt is None:
            raise ValueError("xt (a batch of target images) is required when transfer_loss is given")
        if len(xt) == 0 or len(xs) == 0:
            raise ValueError(f"xs and xt must be non-empty batches, got {len(xs)} and {len(xt)} images")
        transfer_loss.train()
        if concat:
            feats = model.backbone(torch.cat([xs, xt]))
            fs, ft = feats[: len(xs)], feats[len(xs) :]
        else:
            fs, ft = model.backbone(xs), model.backbone(xt)
    logits = model.head(fs)
    cls_loss = F.cross_entropy(logits, ys)
    tl = transfer_loss(fs, ft) if transfer_loss is not None else torch.zeros((), device=cls_loss.device)
    loss = cls_loss + trade_off * tl
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()} (try a smaller lr or trade_off)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    out = {
        "loss": loss.item(),
        "cls_loss": cls_loss.item(),
        "transfer_loss": tl.item(),
        "source_accuracy": (logits.argmax(1) == ys).float().mean().item(),
    }
    if transfer_loss is not None and hasattr(transfer_loss, "discriminator_accuracy"):
        out["discriminator_accuracy"] = float(transfer_loss.discriminator_accuracy)
    return out


def train_adaptation(
    model: nn.Module,
    source: Any,
    target: Any = None,
    transfer_loss: nn.Module | None = None,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    lr_schedule: bool = False,
    weight_decay: float = 0.0,
    trade_off: float = 1.0,
    concat: bool = False,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool = False,
    callback: Callable[[int, nn.Module], dict[str, float]] | None = None,
) -> History:
    """Train ``model`` (in place) with :func:`adaptation_step` for ``epochs`` passes over the source.

    Args:
        model: a network with ``backbone`` and ``head`` (e.g. :class:`~tlcourse.adapt.nets.LeNet`).
        source: labelled source data (``ArrayDataset`` or ``(images, labels)``).
        target: unlabelled target images (a tensor, or a dataset whose labels are ignored);
            may be ``None`` for source-only training.
        transfer_loss: :class:`~tlcourse.adapt.dann.DomainAdversarialLoss`,
            :class:`~tlcourse.adapt.discrepancy.MMDLoss`, :class:`~tlcourse.adapt.discrepancy.CORALLoss`
            or any module ``(f_s, f_t) → scalar``; its parameters (a discriminator) are trained too.
            ``None`` trains on the source only.
        epochs: passes over the source set (the paper's full schedule is far longer than the
            book's CPU budget: raise it on a GPU).
        optimizer, lr, weight_decay: ``"adam"`` or ``"sgd"`` (momentum 0.9) and its settings.
        lr_schedule: anneal the rate as ``μ_0 / (1 + 10 p)^0.75`` (:func:`~tlcourse.adapt.grl.dann_lr`).
        trade_off: weight of the transfer loss.
        concat: one mixed batch through the backbone instead of one batch per domain.
        callback: ``callback(epoch, model) -> dict`` merged into each epoch's record (e.g. a
            monitoring accuracy); the model is left in train mode after it returns.

    Returns:
        a :class:`~tlcourse.train.History` with per-epoch means of the step metrics (for an
        adversarial loss also the discriminator's accuracy and the current ``lambda``).
    """
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_non_negative("trade_off", trade_off)
    xs_all, ys_all = as_tensors("source", source)
    xt_all = None
    if transfer_loss is not None:
        if target is None:
            raise ValueError("target images are required when transfer_loss is given")
        xt_all, _ = as_tensors("target", target, labelled=False)
        if xt_all.shape[2:] != xs_all.shape[2:]:
            raise ValueError(
                f"source and target images must have the same height and width, got {tuple(xs_all.shape[1:])} "
                f"and {tuple(xt_all.shape[1:])}"
            )
    dev = get_device(device)
    model.to(dev)
    params = list(model.parameters())
    if transfer_loss is not None:
        transfer_loss.to(dev)
        params += [p for p in transfer_loss.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    steps_per_epoch = max(1, len(xs_all) // batch_size)
    sched = dann_lr_scheduler(opt, epochs * steps_per_epoch) if lr_schedule else None
    if transfer_loss is not None and hasattr(transfer_loss, "max_steps") and transfer_loss.max_steps is None:
        transfer_loss.max_steps = epochs * steps_per_epoch  # λ schedule spans the whole run
    gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.initial_seed() % 2**63))
    if seed is not None:
        torch.manual_seed(seed)
    n_t = len(xt_all) if xt_all is not None else 1
    history = History()
    for epoch in epoch_range(epochs, progress):
        sums: dict[str, float] = {}
        steps = 0
        for idx_s, idx_t in paired_batches(len(xs_all), n_t, batch_size, gen):
            xs = xs_all[idx_s].to(dev, non_blocking=True)
            ys = ys_all[idx_s].to(dev, non_blocking=True)
            xt = xt_all[idx_t].to(dev, non_blocking=True) if xt_all is not None else None
            out = adaptation_step(model, transfer_loss, opt, xs, ys, xt, trade_off, concat)
            if sched is not None:
                sched.step()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            steps += 1
        record = {"epoch": float(epoch + 1), **{k: v / steps for k, v in sums.items()}}
        record["lr"] = opt.param_groups[0]["lr"]
        if transfer_loss is not None and hasattr(transfer_loss, "lambda_"):
            record["lambda"] = float(transfer_loss.lambda_)
        if callback is not None:
            record.update(callback(epoch + 1, model))
            model.train()
        history.records.append(record)
    model.eval()
    return history


@torch.no_grad()
def accuracy_on(model: nn.Module, data: Any, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on a labelled dataset or ``(images, labels)``."""
    images, labels = as_tensors("data", data)
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(images[i : i + batch_size].to(dev))
        correct += int((logits.argmax(1).cpu() == labels[i : i + batch_size]).sum())
    return correct / len(images)
