"""``fit`` / ``evaluate`` / ``predict``: classification on the engine.

``fit`` is a thin classification step — forward, cross-entropy (or your ``loss_fn``), accuracy —
on :class:`~tlcourse.train.engine.Engine`, which brings device placement, mixed precision, a
``tqdm`` progress bar, a :class:`History` that plots itself, early stopping on a validation
split, atomic safetensors checkpoints that make a run resumable, a clear error when the loss
turns NaN, and transparent ``torch.distributed`` (DDP) support under ``torchrun``.

A batch is ``(inputs, labels)``; ``inputs`` may be a tensor (``model(inputs)``) or a dict of
tensors (``model(**inputs)``, e.g. a tokenizer's output).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive
from tlcourse.distributed import all_reduce_sum
from tlcourse.train.amp import autocast_context
from tlcourse.train.engine import Engine
from tlcourse.train.history import History
from tlcourse.train.inference import model_class_names, predict, predict_names
from tlcourse.train.loaders import make_loader, split_batch, to_device
from tlcourse.train.optimizers import OptimizerArg, make_optimizer, make_scheduler
from tlcourse.utils import get_device

__all__ = ["fit", "evaluate", "predict", "predict_names", "classification_step", "forward_logits", "check_class_labels"]

#: How the training metrics of a classification step are named in a record.
TRAIN_NAMES = {"loss": "train_loss", "accuracy": "train_accuracy"}


def forward_logits(model: nn.Module, inputs: Any) -> torch.Tensor:
    """``model(**inputs)`` for a dict, else ``model(inputs)``; a Hugging Face output gives its ``.logits``."""
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


def check_class_labels(logits: torch.Tensor, labels: Any, name: str = "labels", soft_ok: bool = False) -> None:
    """Labels must be a 1-D integer tensor indexing the model's outputs (checked on the labels' device).

    Strings, float and one-hot labels get a message that says how to fix them; with
    ``soft_ok`` (a caller's own ``loss_fn``) ``(N, C)`` float targets are let through.
    """
    if not isinstance(labels, torch.Tensor):
        sample = labels[0] if isinstance(labels, (list, tuple)) and len(labels) else labels
        what = f"a {type(labels).__name__} of {type(sample).__name__} (e.g. {sample!r})"
        raise TypeError(
            f"{name} must be a tensor of class indices, got {what}: map names to indices "
            "(classes.index(name)), e.g. TextDataset(texts, labels, classes=[...]) or ImageFolder"
        )
    if logits.ndim != 2:
        return
    if labels.ndim == 2 and labels.shape == logits.shape:
        if soft_ok and labels.is_floating_point():
            return
        raise ValueError(
            f"{name} look one-hot (shape {tuple(labels.shape)}, like the logits): pass class indices "
            "labels.argmax(1), or a loss_fn that takes probability targets"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices (int64), got {labels.dtype}: use labels.long() "
                        "if they are whole numbers")
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D tensor of class indices (N,), got shape {tuple(labels.shape)}")
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(
                f"labels must be in [0, {logits.shape[1]}) for a model with {logits.shape[1]} outputs, "
                f"found labels in [{lo}, {hi}]"
            )


def _hard(labels: torch.Tensor) -> torch.Tensor:
    """Class indices of labels (soft ``(N, C)`` targets → their argmax)."""
    return labels.argmax(1) if labels.ndim == 2 else labels


def classification_step(net: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        soft_ok: bool = False) -> Callable:
    """The step of :func:`fit`: ``{"loss", "accuracy", "batch_size"}`` of one ``(inputs, labels)`` batch.

    ``soft_ok``: ``(N, C)`` probability targets are allowed (a caller's ``loss_fn``); accuracy
    then compares with their argmax.
    """
    checked = [False]

    def step(batch: Any) -> dict[str, Any]:
        inputs, labels = split_batch(batch)
        logits = forward_logits(net, inputs)
        if not checked[0]:  # once: reading the labels' range waits for the device
            check_class_labels(logits, labels, "train_data labels", soft_ok)
            checked[0] = True
        out = {"loss": loss_fn(logits, labels), "batch_size": len(labels)}
        if logits.ndim == 2 and labels.ndim in (1, 2):
            out["accuracy"] = (logits.detach().argmax(1) == _hard(labels)).float().mean()
        else:
            out["accuracy"] = torch.zeros((), device=logits.device)
        return out

    return step


class _ReseedEachEpoch:
    """A caller's shuffling DataLoader whose generator ``fit(seed=...)`` reseeds every epoch."""

    def __init__(self, loader: DataLoader, seed: int) -> None:
        self.loader, self.seed = loader, seed

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def set_epoch(self, epoch: int) -> None:
        self.loader.generator.manual_seed(self.seed * 1000 + epoch)


def _check_fit_arguments(model: Any, epochs: Any, lr: Any, weight_decay: Any, scheduler_interval: str,
                         monitor: str, early_stopping: Any, val_data: Any, grad_clip: Any, resume: bool,
                         checkpoint: Any, seed: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_int("epochs", epochs, minimum=1)
    check_positive("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    check_choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
    check_choice("monitor", monitor, ("val_loss", "val_accuracy", "train_loss"))
    if early_stopping is not None:
        check_int("early_stopping", early_stopping, minimum=1)
        if val_data is None and monitor.startswith("val_"):
            raise ValueError("early_stopping needs val_data (or monitor='train_loss')")
    if grad_clip is not None:
        check_positive("grad_clip", grad_clip)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if seed is not None:
        check_int("seed", seed, minimum=0)


def _adopt_class_names(model: nn.Module, data: Any) -> None:
    """A package model without ``class_names`` takes the training data's ``classes`` (same count)."""
    if not hasattr(model, "class_names") or model_class_names(model) is not None:
        return
    dataset = data.dataset if isinstance(data, DataLoader) else data
    classes = getattr(dataset, "classes", None)
    n_out = getattr(model, "num_classes", None)
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes) and len(classes) == n_out:
        model.class_names = list(classes)


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    *,
    epochs: int,
    optimizer: OptimizerArg = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    val_data: Dataset | DataLoader | None = None,
    batch_size: int = 64,
    shuffle: bool = True,
    device: str | torch.device | None = None,
    amp: bool | str = False,
    early_stopping: int | None = None,
    monitor: str = "val_loss",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool | None = None,
    seed: int | None = None,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    grad_clip: float | None = None,
    channels_last: bool = False,
    compile: bool = False,
    accumulate: int = 1,
    sync_batchnorm: bool = False,
) -> History:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        optimizer: an optimizer over ``model``'s parameters, a factory ``params → optimizer``,
            or ``None`` for AdamW(lr, weight_decay) over the trainable parameters.
        scheduler: a learning-rate scheduler (or a factory ``optimizer → scheduler``), stepped
            each epoch or each optimizer step (``scheduler_interval``).
        loss_fn: ``loss(logits, labels)``; cross-entropy by default.
        val_data: evaluated after each epoch (``val_loss``, ``val_accuracy``).
        batch_size: examples per step *per process*; under ``torchrun`` with ``W`` processes the
            global batch is ``W·batch_size`` and each process reads its slice of it.
        amp: mixed precision: ``False``, ``True`` (bf16 where supported, else fp16), ``"bf16"``
            or ``"fp16"`` (with gradient scaling).
        early_stopping: stop after this many epochs without improvement of ``monitor`` and
            restore the best weights (needs ``val_data`` unless ``monitor="train_loss"``).
        checkpoint: file to save (atomically, as safetensors) after every epoch; with
            ``resume=True`` training continues from it and ends with the same weights as an
            uninterrupted run.
        progress: show a tqdm bar (default: yes, unless ``CI``/``TLCOURSE_QUIET`` is set).
        seed: seeds the shuffling (and the global RNG) for a reproducible run.
        grad_clip, channels_last, compile, accumulate, sync_batchnorm: see
            :class:`~tlcourse.train.engine.Engine` (gradient-norm clipping, channels-last memory,
            ``torch.compile``, gradient accumulation over ``accumulate`` batches, batch-norm
            statistics over the global batch under ``torchrun``).

    A model with a ``class_names`` attribute left at ``None`` (the package's models) takes the
    training data's ``classes`` (an ``ImageFolder``, a ``TextDataset``, an ``ArrayDataset``).

    The history records, per epoch, ``train_loss``, ``train_accuracy``, ``val_loss`` and
    ``val_accuracy`` (with ``val_data``) and the learning rate ``lr``.
    """
    _check_fit_arguments(model, epochs, lr, weight_decay, scheduler_interval, monitor, early_stopping, val_data,
                         grad_clip, resume, checkpoint, seed)
    if seed is not None:
        torch.manual_seed(seed)
    _adopt_class_names(model, train_data)
    dev = get_device(device)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (all requires_grad=False)")
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    sched = make_scheduler(scheduler, opt)
    custom_loss = loss_fn is not None
    loss_fn = loss_fn or F.cross_entropy
    loader: Any = make_loader(train_data, batch_size, shuffle, dev, seed, num_workers, collate_fn)
    if loader is train_data and seed is not None and loader.generator is not None:
        loader = _ReseedEachEpoch(loader, seed)
    engine = Engine({"model": model}, {"optimizer": opt}, schedulers={"scheduler": sched} if sched else None,
                    scheduler_interval=scheduler_interval, device=dev, amp=amp, channels_last=channels_last,
                    compile=compile, accumulate=accumulate, grad_clip=grad_clip, sync_batchnorm=sync_batchnorm,
                    progress=progress, desc="epoch", rename=TRAIN_NAMES, checkpoint=checkpoint, resume=resume)
    net = engine.prepare(model, ddp=True)

    def validate(epoch: int) -> dict[str, float]:
        val = evaluate(net, val_data, batch_size=max(batch_size, 256), device=dev, loss_fn=loss_fn, amp=amp,
                       collate_fn=collate_fn)
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    return engine.run(loader, classification_step(net, loss_fn, soft_ok=custom_loss), epochs=epochs,
                      at_epoch_end=validate if val_data is not None else None, monitor=monitor,
                      early_stopping=early_stopping)


def _batches(
    model: nn.Module,
    data: Dataset | DataLoader,
    batch_size: int,
    device: str | torch.device | None,
    amp: bool | str,
    collate_fn: Callable | None,
    soft_ok: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(logits, labels)`` per batch, in eval mode without gradients; the labels are checked on the host."""
    dev = get_device(device)
    model.to(dev)
    loader = make_loader(data, batch_size, False, dev, collate_fn=collate_fn, even=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                inputs, labels = split_batch(batch)
                with autocast_context(dev, amp):
                    logits = forward_logits(model, to_device(inputs, dev))
                check_class_labels(logits, labels, "data labels", soft_ok)
                yield logits.float(), labels.to(dev, non_blocking=True)
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    amp: bool | str = False,
    collate_fn: Callable | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (in eval mode, no gradients).

    The sums are kept on the model's device (float64 where it has it) and, under ``torchrun``,
    all-reduced there — NCCL only reduces GPU tensors — over every process's share of ``data``.
    """
    soft_ok = loss_fn is not None
    loss_fn = loss_fn or F.cross_entropy
    dev = get_device(device)
    dtype = torch.float32 if dev.type == "mps" else torch.float64
    loss_sum = torch.zeros((), dtype=dtype, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    total = 0
    for logits, labels in _batches(model, data, batch_size, dev, amp, collate_fn, soft_ok):
        loss_sum += loss_fn(logits, labels).to(dtype) * len(labels)
        correct += (logits.argmax(1) == _hard(labels)).sum()
        total += len(labels)
    stats = all_reduce_sum(torch.stack([loss_sum, correct.to(dtype), torch.tensor(float(total), dtype=dtype,
                                                                                  device=dev)]))
    return {"loss": (stats[0] / stats[2]).item(), "accuracy": (stats[1] / stats[2]).item()}
