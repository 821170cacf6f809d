"""``fit`` / ``evaluate`` / ``predict``: a small, honest training loop for classification.

Built from plain PyTorch parts a reader can follow (DataLoader → forward → loss → backward →
optimizer step), with what a practitioner expects around it: device placement, optional mixed
precision, a ``tqdm`` progress bar, a :class:`History` that plots itself, early stopping on a
validation split, atomic safetensors checkpoints that make a run resumable, a clear error when
the loss turns NaN, and transparent ``torch.distributed`` (DDP) support under ``torchrun``.

A batch is ``(inputs, labels)``; ``inputs`` may be a tensor (``model(inputs)``) or a dict of
tensors (``model(**inputs)``, e.g. a tokenizer's output).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tlcourse.checkpoint import load_checkpoint, save_checkpoint
from tlcourse.checks import check_choice, check_int, check_non_negative, check_positive
from tlcourse.train.amp import autocast_context
from tlcourse.train.history import History, NonFiniteLossError
from tlcourse.train.loaders import _quiet, _world, make_loader
from tlcourse.train.loaders import split_batch as _split_batch
from tlcourse.train.loaders import to_device as _to_device
from tlcourse.utils import get_device

__all__ = ["fit", "evaluate", "predict"]


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    if hasattr(out, "logits"):
        out = out.logits
    return out


def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim == 2 and labels.ndim == 1 and not labels.is_floating_point() and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(
                f"labels must be in [0, {logits.shape[1]}) for a model with {logits.shape[1]} outputs, "
                f"found labels in [{lo}, {hi}]"
            )


def fit(
    model: nn.Module,
    train_data: Dataset | DataLoader,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
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
) -> History:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        optimizer: an optimizer over ``model``'s parameters, a factory ``params → optimizer``,
            or ``None`` for AdamW(lr, weight_decay) over the trainable parameters.
        scheduler: a learning-rate scheduler (or a factory ``optimizer → scheduler``), stepped
            each epoch or each step (``scheduler_interval``).
        loss_fn: ``loss(logits, labels)``; cross-entropy by default.
        val_data: evaluated after each epoch (``val_loss``, ``val_accuracy``).
        batch_size: examples per step *per process*; under ``torchrun`` with ``W`` processes the
            global batch is ``W·batch_size`` and each process reads its own shard.
        amp: mixed precision: ``False``, ``True`` (bf16 where supported, else fp16), ``"bf16"``
            or ``"fp16"`` (with gradient scaling).
        early_stopping: stop after this many epochs without improvement of ``monitor`` and
            restore the best weights (needs ``val_data``).
        checkpoint: file to save (atomically, as safetensors) after every epoch; with
            ``resume=True`` training continues from it and ends with the same weights as an
            uninterrupted run.
        progress: show a tqdm bar (default: yes, unless ``CI``/``TLCOURSE_QUIET`` is set).
        seed: seeds the shuffling (and the global RNG) for a reproducible run.
    """
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
        torch.manual_seed(seed)

    dev = get_device(device)
    rank, world = _world()
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (all requires_grad=False)")
    if optimizer is None:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer(params)
    if scheduler is not None and not hasattr(scheduler, "step"):
        scheduler = scheduler(optimizer)
    loss_fn = loss_fn or F.cross_entropy

    loader = make_loader(train_data, batch_size, shuffle, dev, seed, num_workers, collate_fn)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        net = torch.compile(net)  # type: ignore[assignment]
    use_scaler = amp == "fp16" or (amp is True and dev.type == "cuda" and not torch.cuda.is_bf16_supported())
    scaler = torch.amp.GradScaler(dev.type, enabled=use_scaler)

    history = History()
    start_epoch = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, model, optimizer)
        start_epoch = int(state["epoch"])
        history = History(state["history"]["records"], state["history"]["best_epoch"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        rng = state["extra_tensors"].get("rng_state")
        if rng is not None:
            torch.set_rng_state(rng)

    show = (not _quiet()) if progress is None else bool(progress)
    show = show and rank == 0
    best_value: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    sign = 1.0 if monitor.endswith("loss") else -1.0
    if history.best_epoch is not None and history.records:
        best_value = history.records[history.best_epoch][monitor]

    if show:
        from tqdm.auto import tqdm
    else:  # no widget machinery (and no IProgress warning) when the bar is hidden
        from tqdm import tqdm

    # one refresh a second at most: a flood of progress messages can stall notebook runners
    bar = tqdm(total=(epochs - start_epoch) * len(loader), desc="fit", disable=not show, leave=False, unit="step",
               mininterval=1.0)
    for epoch in range(start_epoch, epochs):
        net.train()
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if loader.generator is not None and seed is not None:
            loader.generator.manual_seed(seed * 1000 + epoch)
        total_loss = torch.zeros((), device=dev)
        total_correct = torch.zeros((), device=dev)
        seen = 0
        bar.set_description(f"epoch {epoch + 1}/{epochs}")
        for step, batch in enumerate(loader):
            inputs, labels = _split_batch(batch)
            inputs, labels = _to_device(inputs, dev), labels.to(dev, non_blocking=True)
            if channels_last and isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast_context(dev, amp):
                logits = _forward(net, inputs)
                if step == 0:
                    _check_labels(logits, labels)
                loss = loss_fn(logits, labels)
            # On the CPU check every step; on an accelerator only every 50 steps (and at the
            # epoch's end) so the check does not force a host-device sync per step.
            if (dev.type == "cpu" or step % 50 == 0 or step == len(loader) - 1) and not torch.isfinite(loss.detach()):
                hint = f"; the last good checkpoint is kept at {ckpt}" if ckpt is not None and ckpt.exists() else ""
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}. Usual causes: a learning "
                    f"rate that is too high, inputs with NaN/inf, or log(0) in a custom loss{hint}."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            n = len(labels)
            seen += n
            total_loss += loss.detach().float() * n
            if logits.ndim == 2 and labels.ndim == 1:
                total_correct += (logits.detach().argmax(1) == labels).sum()
            bar.update(1)
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        stats = torch.stack([total_loss, total_correct, torch.tensor(float(seen), device=dev)])
        if world > 1:
            dist.all_reduce(stats)
        record = {"epoch": epoch + 1, "train_loss": (stats[0] / stats[2]).item(), "train_accuracy": (stats[1] / stats[2]).item()}
        if val_data is not None:
            val = evaluate(net, val_data, batch_size=max(batch_size, 256), device=dev, loss_fn=loss_fn, amp=amp, collate_fn=collate_fn)
            record["val_loss"], record["val_accuracy"] = val["loss"], val["accuracy"]
        record["lr"] = optimizer.param_groups[0]["lr"]
        history.records.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k.endswith(("loss", "accuracy"))})

        value = record.get(monitor)
        if value is not None and (best_value is None or sign * value < sign * best_value):
            best_value, history.best_epoch, stale = value, epoch, 0
            if early_stopping is not None:
                best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if ckpt is not None and rank == 0:
            save_checkpoint(
                ckpt, model, optimizer, extra_tensors={"rng_state": torch.get_rng_state()},
                epoch=epoch + 1, history=history.to_dict(),
                scheduler=scheduler.state_dict() if scheduler is not None else None,
            )
        if early_stopping is not None and stale >= early_stopping:
            break
    bar.close()
    if early_stopping is not None and best_state is not None:
        model.load_state_dict(best_state)
    return history


def _batches(
    model: nn.Module,
    data: Dataset | DataLoader,
    batch_size: int,
    device: str | torch.device | None,
    amp: bool | str,
    collate_fn: Callable | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    dev = get_device(device)
    model.to(dev)
    loader = make_loader(data, batch_size, False, dev, collate_fn=collate_fn)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                inputs, labels = _split_batch(batch)
                inputs = _to_device(inputs, dev)
                with autocast_context(dev, amp):
                    logits = _forward(model, inputs)
                yield logits.float(), labels.to(dev)
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
    """Mean loss and accuracy of ``model`` on ``data`` (in eval mode, no gradients)."""
    loss_fn = loss_fn or F.cross_entropy
    total = correct = 0
    loss_sum = 0.0
    for logits, labels in _batches(model, data, batch_size, device, amp, collate_fn):
        _check_labels(logits, labels)
        loss_sum += float(loss_fn(logits, labels)) * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
    stats = torch.tensor([loss_sum, correct, total], dtype=torch.float64)
    _, world = _world()
    if world > 1:
        dist.all_reduce(stats)
    return {"loss": (stats[0] / stats[2]).item(), "accuracy": (stats[1] / stats[2]).item()}


def predict(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool | str = False,
    collate_fn: Callable | None = None,
) -> torch.Tensor:
    """Logits of ``model`` for every example of ``data``, in order, on the CPU."""
    outs = [logits.cpu() for logits, _ in _batches(model, data, batch_size, device, amp, collate_fn)]
    return torch.cat(outs)
