"""One training loop for every feature-level adaptation method (source-only, MMD, CORAL, DANN, CDAN).

Feature-level unsupervised domain adaptation minimises (book Eq. (6.5))

    L = (1/n_s) Σ CE(h(g(x_s)), y_s) + trade_off · D(g(X_s), g(X_t)),

the classification loss on labelled source images plus a *transfer loss* ``D`` that measures how
far apart the source and target features are: an MMD (Long et al., 2015), the CORAL distance
(Sun & Saenko, 2016) or the loss of a domain discriminator behind a gradient reversal layer
(Ganin et al., 2016). Each is a plain ``nn.Module`` called as ``transfer_loss(f_s, f_t)``; a
loss that also needs the classifier's predictions (CDAN, Long et al., 2018) sets
``uses_logits = True`` and is called as ``transfer_loss(f_s, f_t, logits_s, logits_t)``.
:func:`adaptation_losses` is the whole recipe; :func:`adaptation_step` runs it once in your own
loop, :func:`train_adaptation` runs it on the engine (:class:`~tlcourse.train.engine.Engine`).

**Models.** Any model that exposes features and logits, in one of two ways
(:func:`feature_parts`): ``.backbone`` (inputs → features) and ``.head`` (features → logits)
modules, like the course's :class:`~tlcourse.adapt.nets.LeNet` and
:class:`~tlcourse.models.SmallResNet`, or timm-style ``forward_features(x)`` and
``forward_head(f)`` methods.

**Data.** The labelled source is a ``Dataset`` of ``(image, label)`` (or an ``(images, labels)``
pair); the target is a tensor of images or a dataset whose labels are never read.

**Several processes.** Under ``torchrun`` each process computes the features of its slice of the
source and target batches; the transfer loss sees the features of the *global* batches, gathered
with their gradients (:func:`~tlcourse.distributed.gather_with_grad`), so MMD and CORAL measure
the same discrepancy as one process would, and gradients are averaged at each optimizer step.
With batch norm in the backbone, pass ``sync_batchnorm=True`` for statistics over the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.grl import dann_lr_scheduler
from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive
from tlcourse.distributed import gather_with_grad
from tlcourse.train import Engine, History
from tlcourse.train.classification import check_class_labels
from tlcourse.train.engine import check_engine_options
from tlcourse.train.features import extract_features
from tlcourse.train.loaders import as_dataset, fetch, paired_loader

__all__ = [
    "feature_parts",
    "head_parameters",
    "paired_batches",
    "make_optimizer",
    "adaptation_losses",
    "adaptation_step",
    "train_adaptation",
    "extract_features",
    "accuracy_on",
]


class _Method(nn.Module):
    """A module whose forward is one method of another module (timm's ``forward_features``...)."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def feature_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(features, head)`` of a model: its ``.backbone``/``.head`` modules or timm-style methods.

    Raises a ``TypeError`` saying what is needed when ``model`` offers neither.
    """
    if isinstance(getattr(model, "backbone", None), nn.Module) and isinstance(getattr(model, "head", None), nn.Module):
        return model.backbone, model.head
    if callable(getattr(model, "forward_features", None)) and callable(getattr(model, "forward_head", None)):
        return _Method(model, "forward_features"), _Method(model, "forward_head")
    raise TypeError(
        f"model ({type(model).__name__}) must expose features and logits: either .backbone (inputs → features) and "
        ".head (features → logits) modules, or timm-style forward_features(x) and forward_head(features) methods"
    )


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the classifier head: ``model.head``'s, or timm's ``get_classifier()``'s."""
    if isinstance(getattr(model, "backbone", None), nn.Module) and isinstance(getattr(model, "head", None), nn.Module):
        return list(model.head.parameters())
    feature_parts(model)  # a clear TypeError for a model without the protocol
    get_classifier = getattr(model, "get_classifier", None)
    return list(get_classifier().parameters()) if callable(get_classifier) else []


def paired_batches(
    n_source: int, n_target: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Index pairs ``(source_idx, target_idx)`` for one epoch over the source set.

    The source is shuffled and cut into ``n_source // batch_size`` full batches; target indices
    come from a shuffled pass over the target set, restarted whenever it runs out (the order
    :class:`~tlcourse.train.loaders.PairedBatches` uses).
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


def adaptation_losses(
    features: nn.Module,
    head: nn.Module,
    transfer_loss: nn.Module | None,
    xs: torch.Tensor,
    ys: torch.Tensor,
    xt: torch.Tensor | None = None,
    trade_off: float = 1.0,
    concat: bool = False,
) -> dict[str, torch.Tensor]:
    """Book Eq. (6.5) on one batch: ``CE(head(f_s), y_s) + trade_off · transfer_loss(f_s, f_t)``.

    With ``concat=False`` (default) the source and target batches go through ``features``
    separately, so every batch-norm layer normalises each domain with its own statistics (the
    training-time side of AdaBN; evaluate with :func:`tlcourse.adapt.adabn.adapt_batchnorm`).
    ``concat=True`` feeds one mixed batch, as in the original DANN. ``transfer_loss=None`` is
    plain source-only training (``xt`` is then ignored). Returns ``loss`` (to back-propagate),
    ``cls_loss``, ``transfer_loss``, ``source_accuracy`` and, for an adversarial transfer loss,
    ``discriminator_accuracy`` — all tensors, read without waiting for the device.
    """
    return _forward_losses(features, head, transfer_loss, xs, ys, xt, trade_off, concat)[0]


def _forward_losses(features: nn.Module, head: nn.Module, transfer_loss: nn.Module | None, xs: torch.Tensor,
                    ys: torch.Tensor, xt: torch.Tensor | None, trade_off: float,
                    concat: bool) -> tuple[dict, torch.Tensor]:
    if transfer_loss is None:
        fs, ft = features(xs), None
    else:
        if xt is None:
            raise ValueError("xt (a batch of target images) is required when transfer_loss is given")
        if len(xt) == 0 or len(xs) == 0:
            raise ValueError(f"xs and xt must be non-empty batches, got {len(xs)} and {len(xt)} images")
        transfer_loss.train()
        if concat:
            feats = features(torch.cat([xs, xt]))
            fs, ft = feats[: len(xs)], feats[len(xs) :]
        else:
            fs, ft = features(xs), features(xt)
    logits = head(fs)
    cls_loss = F.cross_entropy(logits, ys)
    if transfer_loss is None:
        tl = torch.zeros((), device=cls_loss.device)
    elif getattr(transfer_loss, "uses_logits", False):
        tl = transfer_loss(gather_with_grad(fs), gather_with_grad(ft), gather_with_grad(logits),
                           gather_with_grad(head(ft)))
    else:
        tl = transfer_loss(gather_with_grad(fs), gather_with_grad(ft))
    out = {
        "loss": cls_loss + trade_off * tl,
        "cls_loss": cls_loss.detach(),
        "transfer_loss": tl.detach(),
        "source_accuracy": (logits.detach().argmax(1) == ys).float().mean(),
    }
    accuracy = getattr(transfer_loss, "discriminator_accuracy", None)
    if accuracy is not None:
        out["discriminator_accuracy"] = accuracy
    return out, logits


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
    """One optimizer step of :func:`adaptation_losses` for your own loop; returns the metrics as floats.

    ``model`` exposes its features and logits (:func:`feature_parts`); ``optimizer`` holds its
    parameters and those of ``transfer_loss`` (a discriminator), if any.
    """
    check_non_negative("trade_off", trade_off)
    features, head = feature_parts(model)
    model.train()
    out = adaptation_losses(features, head, transfer_loss, xs, ys, xt, trade_off, concat)
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()} (try a smaller lr or trade_off)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}


def _adaptation_data(source: Any, target: Any, needs_target: bool) -> tuple[Any, Any]:
    source = as_dataset("source", source)
    if not needs_target:
        return source, None
    if target is None:
        raise ValueError("target images are required when transfer_loss is given")
    target = as_dataset("target", target, labelled=False)
    if not isinstance(source, torch.utils.data.DataLoader) and not isinstance(target, torch.utils.data.DataLoader):
        shape_s, shape_t = fetch(source, torch.tensor([0]))[0].shape, fetch(target, torch.tensor([0]))[0].shape
        if shape_s[2:] != shape_t[2:]:
            raise ValueError(f"source and target images must have the same height and width, got "
                             f"{tuple(shape_s[1:])} and {tuple(shape_t[1:])}")
    return source, target


def adaptation_training_step(features: nn.Module, head: nn.Module, transfer_loss: nn.Module | None,
                             trade_off: float, concat: bool) -> Callable[[Any], dict[str, Any]]:
    """The engine step of :func:`train_adaptation` for batches ``((x_s, y_s), (x_t, ...))``."""
    checked = [False]

    def step(batch: Any) -> dict[str, Any]:
        (xs, ys, *_), target = batch
        out, logits = _forward_losses(features, head, transfer_loss, xs, ys, target[0] if target else None,
                                      trade_off, concat)
        if not checked[0]:  # once: reading the labels' range waits for the device
            check_class_labels(logits, ys)
            checked[0] = True
        return out

    return step


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
    **engine_options: Any,
) -> History:
    """Train ``model`` (in place) with :func:`adaptation_losses` for ``epochs`` passes over the source.

    Args:
        model: a network exposing features and logits (:func:`feature_parts`), e.g.
            :class:`~tlcourse.adapt.nets.LeNet`.
        source: labelled source data (a ``Dataset`` of ``(image, label)`` or ``(images, labels)``).
        target: unlabelled target images (a tensor, or a dataset whose labels are ignored);
            may be ``None`` for source-only training.
        transfer_loss: :class:`~tlcourse.adapt.dann.DomainAdversarialLoss`,
            :class:`~tlcourse.adapt.discrepancy.MMDLoss`, :class:`~tlcourse.adapt.discrepancy.CORALLoss`
            or any module ``(f_s, f_t) → scalar`` (``(f_s, f_t, logits_s, logits_t)`` if it sets
            ``uses_logits``); its parameters (a discriminator) are trained too. ``None`` trains on
            the source only.
        epochs: passes over the source set (the paper's full schedule is far longer than the
            book's CPU budget: raise it on a GPU). ``batch_size`` is per process.
        optimizer, lr, weight_decay: ``"adam"`` or ``"sgd"`` (momentum 0.9) and its settings.
        lr_schedule: anneal the rate as ``μ_0 / (1 + 10 p)^0.75`` (:func:`~tlcourse.adapt.grl.dann_lr`).
        trade_off: weight of the transfer loss.
        concat: one mixed batch through the backbone instead of one batch per domain.
        callback: ``callback(epoch, model) -> dict`` merged into each epoch's record (e.g. a
            monitoring accuracy); the model is back in train mode for the next epoch.
        engine_options: ``amp``, ``channels_last``, ``compile``, ``accumulate``, ``grad_clip``,
            ``sync_batchnorm``, ``checkpoint``, ``resume``, ``nan_check_every``
            (see :class:`~tlcourse.train.engine.Engine`).

    Returns:
        a :class:`~tlcourse.train.History` with per-epoch means of the step metrics, the learning
        rate and, for a loss with a schedule (DANN), the current ``lambda``.
    """
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_non_negative("trade_off", trade_off)
    options = check_engine_options(engine_options)
    features, head = feature_parts(model)
    source, target = _adaptation_data(source, target, transfer_loss is not None)
    params = list(model.parameters())
    if transfer_loss is not None:
        params += [p for p in transfer_loss.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.initial_seed() % 2**63))
    if seed is not None:
        torch.manual_seed(seed)
    loader = paired_loader(source, target, batch_size, gen)
    modules = {"model": model} if transfer_loss is None else {"model": model, "transfer_loss": transfer_loss}
    if transfer_loss is not None and hasattr(transfer_loss, "max_steps") and transfer_loss.max_steps is None:
        transfer_loss.max_steps = epochs * len(loader)  # λ schedule spans the whole run
    schedulers = {"lr": dann_lr_scheduler(opt, epochs * len(loader))} if lr_schedule else None
    engine = Engine(modules, {"optimizer": opt}, schedulers=schedulers, scheduler_interval="step", device=device,
                    progress=progress, desc="adapt", **options)

    def at_epoch_end(epoch: int) -> dict[str, float]:
        record: dict[str, float] = {}
        if transfer_loss is not None and hasattr(transfer_loss, "lambda_"):
            record["lambda"] = float(transfer_loss.lambda_)
        if callback is not None:
            record.update(callback(epoch + 1, model))
        return record

    step = adaptation_training_step(engine.prepare(features), engine.prepare(head), transfer_loss, trade_off, concat)
    history = engine.run(loader, step, epochs=epochs, at_epoch_end=at_epoch_end)
    model.eval()
    return history


@torch.no_grad()
def accuracy_on(model: nn.Module, data: Any, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on a labelled dataset or ``(images, labels)``."""
    dataset = as_dataset("data", data)
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for start in range(0, len(dataset), batch_size):
        images, labels, *_ = fetch(dataset, torch.arange(start, min(start + batch_size, len(dataset))))
        correct += int((model(images.to(dev)).argmax(1).cpu() == labels).sum())
    return correct / len(dataset)
