"""The training engine: one epoch loop for every method of the course.

A method writes a **step** — what one batch does — and the engine owns everything around it:
device placement, mixed precision (autocast, plus :class:`torch.amp.GradScaler` for float16),
channels-last memory, optional ``torch.compile``, gradient accumulation and clipping,
learning-rate schedulers (per step or per epoch), the progress bar, the :class:`History`, a
NaN/inf check that does not stall an accelerator every step, validation with early stopping on
a monitored metric (restoring the best weights), atomic safetensors checkpoints that resume a
run bitwise, and data parallelism under ``torchrun`` (each process takes its slice of the global
batch, gradients are averaged, metrics are all-reduced on the device, rank 0 logs and saves).

There are two kinds of step:

* **automatic**, ``step(batch) -> {"loss": tensor, ...}``: the engine back-propagates
  ``"loss"`` and, at each accumulation boundary, averages gradients, unscales, clips and steps
  every optimizer (then the per-step schedulers). Most methods are this: classification,
  distillation, feature-level adaptation, the contrastive dual encoder, the captioner.
* **manual**, ``step(batch, ctx) -> {...}``: for methods that drive several optimizers or write
  gradients themselves (GANs and ADDA alternate discriminator and generator updates; PCGrad and
  GradNorm build the gradient from per-task gradients). The step calls ``ctx.backward(loss)``
  (loss scaling and accumulation handled), ``ctx.step(optimizer)`` (gradient averaging,
  unscaling, clipping, the update) and, before each backward, ``ctx.zero_grad(optimizer)``
  for the gradients it accumulates into; it may read ``ctx.loss_scale``. The same update runs in a
  user's own loop with :class:`PlainContext`.

Either way the step returns named scalar tensors: the engine averages each over the epoch
(weighted by the batch's ``"batch_size"`` entry when the step gives one) and checks every entry
whose name contains ``"loss"`` for NaN/inf. Read top to bottom: :class:`Engine` builds the run,
:meth:`Engine.prepare` wraps what the step calls, :meth:`Engine.run` loops over epochs,
``_train_epoch`` over batches, ``_close_epoch`` turns sums into a record.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcourse.checks import check_choice, check_int, check_positive, value_checks
from tlcourse.distributed import all_reduce_sum, average_gradients, convert_sync_batchnorm, rank, world_size
from tlcourse.train.amp import amp_dtype, make_grad_scaler
from tlcourse.train.context import PlainContext, StepContext
from tlcourse.train.history import History, NonFiniteLossError
from tlcourse.train.loaders import _quiet, to_device
from tlcourse.train.state import load_state, rng_state, save_state, set_rng_state
from tlcourse.utils import get_device

__all__ = ["Engine", "StepContext", "PlainContext", "ENGINE_OPTIONS", "check_engine_options"]  # contexts: re-exported

#: Keyword arguments every method loop passes through to its :class:`Engine`.
ENGINE_OPTIONS = ("amp", "channels_last", "compile", "accumulate", "grad_clip", "sync_batchnorm", "checkpoint",
                  "resume", "nan_check_every")


def check_engine_options(options: Mapping[str, Any], allowed: Iterable[str] = ENGINE_OPTIONS) -> dict[str, Any]:
    """``options`` if each is an engine option a method accepts; a clear ``TypeError`` otherwise."""
    allowed = tuple(allowed)
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; the engine options are {list(allowed)}")
    return dict(options)


class Engine:
    """Runs epochs of a step function; see the module docstring.

    Args:
        modules: every module the run uses, by name: moved to the device, checkpointed, put in
            train mode each epoch (eval mode for those in ``frozen``).
        optimizers: the optimizers, by name (their parameters are what the run trains).
        schedulers: learning-rate schedulers by name, stepped per ``scheduler_interval``
            (``"epoch"`` or ``"step"``: each optimizer update).
        frozen: names of modules that never train (a teacher, ADDA's source encoder).
        amp: ``False``, ``True`` (bf16 where supported, else fp16), ``"bf16"`` or ``"fp16"``.
        channels_last: channels-last memory for the modules and for 4-D input batches.
        compile: pass what :meth:`prepare` returns through ``torch.compile``.
        accumulate: optimizer steps every ``accumulate`` batches (``no_sync`` under DDP meanwhile).
        grad_clip: clip the global gradient norm of each optimizer's parameters to this value.
        sync_batchnorm: under ``torchrun``, batch-norm statistics over the global batch
            (:func:`~tlcourse.distributed.convert_sync_batchnorm`, in place).
        progress: show a ``tqdm.auto`` bar (default: yes unless ``CI``/``TLCOURSE_QUIET`` is set).
        rename: names for the step's metrics in each record (``{"loss": "train_loss"}``);
            others keep the step's names.
        nan_check_every: check the losses every this many steps (default: every step on a CPU,
            every 50 elsewhere: a check makes the host wait for the device). Always at epoch end.
        checkpoint, resume: file saved atomically after every epoch (rank 0); with ``resume``
            an existing file is loaded and the run continues as if never interrupted.
        state: other objects with ``state_dict``/``load_state_dict`` to checkpoint (e.g. a
            batch source's generator).
        trace: keep every step's metrics in ``history.steps`` (all of them, or these names).
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        schedulers: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        frozen: Iterable[str] = (),
        device: str | torch.device | None = None,
        amp: bool | str = False,
        channels_last: bool = False,
        compile: bool = False,
        accumulate: int = 1,
        grad_clip: float | None = None,
        sync_batchnorm: bool = False,
        progress: bool | None = None,
        desc: str = "train",
        rename: Mapping[str, str] | None = None,
        nan_check_every: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        state: Mapping[str, Any] | None = None,
        trace: bool | Iterable[str] = False,
    ) -> None:
        check_choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
        self.accumulate = check_int("accumulate", accumulate, minimum=1)
        self.grad_clip = None if grad_clip is None else check_positive("grad_clip", grad_clip)
        if resume and checkpoint is None:
            raise ValueError("resume=True needs a checkpoint path")
        self.device, self.rank, self.world = get_device(device), rank(), world_size()
        self.dtype = amp_dtype(self.device, amp)
        self.scaler = make_grad_scaler(self.device, amp)
        self.modules, self.frozen = dict(modules), set(frozen)
        for name, module in self.modules.items():
            module.to(self.device)
            if sync_batchnorm and self.world > 1:
                self.modules[name] = convert_sync_batchnorm(module, self.device)
            if channels_last:
                module.to(memory_format=torch.channels_last)
        self.optimizers, self.schedulers = dict(optimizers), dict(schedulers or {})
        self.scheduler_interval, self.channels_last, self.compile = scheduler_interval, channels_last, compile
        self.show = ((not _quiet()) if progress is None else bool(progress)) and self.rank == 0
        self.desc, self.rename, self.state = desc, dict(rename or {}), dict(state or {})
        every = nan_check_every or (1 if self.device.type == "cpu" else 50)
        self.nan_check_every = check_int("nan_check_every", every, minimum=1)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.resume, self.trace = resume, trace
        self.epoch = 0
        self._ddp: list[nn.parallel.DistributedDataParallel] = []
        self._ddp_params: set[int] = set()
        self._bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self._stepped: set[int] = set()
        # CPU batches are used as they are (a no-op copy per tensor is not free for tiny steps)
        self._move_batches = self.device.type != "cpu" or channels_last

    def prepare(self, module: nn.Module, *, ddp: bool = False) -> nn.Module:
        """``module`` as the step should call it: in ``DistributedDataParallel`` if ``ddp`` (under
        ``torchrun``), compiled if the engine compiles. Gradients of parameters outside a DDP
        wrapper are averaged over processes at each optimizer step instead."""
        net = module
        if ddp and self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(module, device_ids=ids)
            self._ddp.append(net)
            self._ddp_params |= {id(p) for p in module.parameters()}
        return torch.compile(net) if self.compile else net

    # ------------------------------------------------------------------ the epoch loop

    def run(
        self,
        loader: Iterable[Any],
        step: Callable[..., Mapping[str, Any]],
        *,
        epochs: int,
        manual: bool = False,
        at_epoch_end: Callable[[int], Mapping[str, float]] | None = None,
        monitor: str | None = None,
        early_stopping: int | None = None,
    ) -> History:
        """Train for ``epochs`` epochs over ``loader`` (an iterable of batches with a length).

        ``at_epoch_end(epoch)`` returns extra entries for the epoch's record (validation scores).
        ``monitor`` names the record entry that decides the best epoch (lower is better when it
        ends in ``"loss"``); with ``early_stopping=k`` training stops after ``k`` epochs without
        improvement and the best epoch's weights are restored.
        """
        check_int("epochs", epochs, minimum=1)
        best = _Best(monitor, early_stopping)
        history = History()
        start = self._load(loader, history, best) if self._can_resume() else 0
        bar = self._progress_bar((epochs - start) * len(loader))  # type: ignore[arg-type]
        try:
            for epoch in range(start, epochs):
                began = time.perf_counter()
                self.epoch = epoch
                bar.set_description(f"{self.desc} {epoch + 1}/{epochs}")
                with value_checks(False):  # the engine checks the losses itself, without a sync per step
                    sums, count, trace = self._train_epoch(loader, step, manual, bar)
                record = self._close_epoch(sums, count, trace, history, at_epoch_end)
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k.endswith(("loss", "accuracy"))})
                stop = best.update(record, epoch, history, self)
                history.seconds += time.perf_counter() - began
                self._save(loader, history, best, epoch)
                if stop:
                    break
        finally:
            bar.close()
        best.restore(self)
        return history

    def _train_epoch(self, loader: Iterable[Any], step: Callable, manual: bool, bar: Any) -> tuple:
        for name, module in self.modules.items():
            module.train(name not in self.frozen)
        for source in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(source, "set_epoch"):
                source.set_epoch(self.epoch)
        sums: dict[str, Any] = {}
        count, trace = 0, []
        n = len(loader) if hasattr(loader, "__len__") else None
        for i, batch in enumerate(loader):
            boundary, divisor = self._window(i, n)
            if not manual and i % self.accumulate == 0:  # a manual step clears what it accumulates into
                for opt in self.optimizers.values():
                    opt.zero_grad(set_to_none=True)
            if self._move_batches:
                batch = to_device(batch, self.device, self.channels_last)
            out = dict(self._manual_step(step, batch, i, boundary, divisor) if manual
                       else self._automatic_step(step, batch, i, boundary, divisor, n))
            weight = out.pop("batch_size", 1)
            if manual or boundary:
                self._after_update(boundary)
            metrics = {k: _metric(v) for k, v in out.items()}
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + (v if weight == 1 else v * weight)
            count += int(weight)
            if self.trace:
                trace.append(metrics)
            if manual:
                self._check_finite(out, i, n)
            bar.update(1)
        if n is None or n == 0:
            self._check_finite({}, 0, 0, force=True)
        return sums, count, trace

    def _window(self, i: int, n: int | None) -> tuple[bool, int]:
        """Whether batch ``i`` ends an accumulation window, and the window's size."""
        if self.accumulate == 1:
            return True, 1
        start = i - i % self.accumulate
        size = self.accumulate if n is None else min(self.accumulate, n - start)
        return (i + 1) % self.accumulate == 0 or (n is not None and i + 1 == n), size

    def _automatic_step(self, step: Callable, batch: Any, i: int, boundary: bool, divisor: int, n: int | None) -> Any:
        with self._no_sync(not boundary):
            with self._autocast():
                out = step(batch)
            if "loss" not in out:
                raise ValueError("an automatic step must return a dict with a 'loss' tensor to back-propagate")
            self._check_finite(out, i, n)  # before the update: a bad loss never reaches the weights (CPU)
            self._backward(out["loss"], divisor)
        if boundary:
            for opt in self.optimizers.values():
                self._optimizer_step(opt)
        return out

    def _manual_step(self, step: Callable, batch: Any, i: int, boundary: bool, divisor: int) -> Any:
        if self.accumulate > 1 and len(self.optimizers) > 1:
            raise ValueError("accumulate > 1 needs a single optimizer in a manual step")
        ctx = StepContext(self, self.epoch, i, boundary, divisor)
        with self._no_sync(not boundary), self._autocast():
            return step(batch, ctx)

    def _backward(self, loss: torch.Tensor, divisor: int, retain_graph: bool = False) -> None:
        loss = loss / divisor if divisor != 1 else loss
        with torch.autocast(self.device.type, enabled=False) if self.dtype is not None else contextlib.nullcontext():
            self.scaler.scale(loss).backward(retain_graph=retain_graph)

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.world > 1:
            average_gradients([p for p in params if id(p) not in self._ddp_params])
        if self.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        if id(optimizer) in self._stepped:  # stepped twice in one batch (ADDA's d_steps): new scale first
            self.scaler.update()
            self._stepped.clear()
        self.scaler.step(optimizer)
        self._stepped.add(id(optimizer))

    def _after_update(self, boundary: bool) -> None:
        if self._stepped:
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            self.scaler.update()
            self._stepped.clear()
            skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale  # fp16 overflow: no update
            if self.scheduler_interval == "step" and boundary and not skipped:
                for scheduler in self.schedulers.values():
                    scheduler.step()

    def _no_sync(self, accumulating: bool) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        if accumulating:
            for net in self._ddp:
                stack.enter_context(net.no_sync())
        return stack

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _check_finite(self, out: Mapping[str, Any], i: int, n: int | None, force: bool = False) -> None:
        """Flag a non-finite loss on the device; look at the flag only every few steps.

        On a CPU, where reading a value costs nothing, every step's losses are read directly.
        """
        losses = [v for k, v in out.items() if "loss" in k and isinstance(v, torch.Tensor)]
        if self.nan_check_every == 1 and self.device.type == "cpu":
            if all(math.isfinite(v.item()) if v.numel() == 1 else bool(torch.isfinite(v).all()) for v in losses):
                return
            self._bad = torch.ones((), dtype=torch.bool)
        elif losses:
            total = sum(v.detach() if v.numel() == 1 else v.detach().sum() for v in losses)  # NaN/inf survive a sum
            self._bad = self._bad | ~torch.isfinite(total).reshape(())
        due = force or (i + 1) % self.nan_check_every == 0 or (n is not None and i + 1 == n)
        if due and bool(self._bad):
            bad_names = [k for k, v in out.items() if "loss" in k and isinstance(v, torch.Tensor)
                         and not bool(torch.isfinite(v.detach()).all())]
            name = bad_names[0] if bad_names else "the loss"
            value = float(out[name].detach().float().sum()) if bad_names else float("nan")
            hint = f"; the last good checkpoint is kept at {self.checkpoint}" if self.checkpoint and \
                self.checkpoint.exists() else ""
            late = "" if self.nan_check_every == 1 else f" (checked every {self.nan_check_every} steps)"
            raise NonFiniteLossError(
                f"{name} became {value} at epoch {self.epoch + 1}, step {i + 1}{late}. Usual causes: a learning "
                f"rate that is too high, inputs with NaN/inf, or log(0) in a custom loss{hint}."
            )

    # ------------------------------------------------------------------ end of an epoch

    def _close_epoch(self, sums: dict[str, Any], count: int, trace: list, history: History,
                     at_epoch_end: Callable[[int], Mapping[str, float]] | None) -> dict[str, float]:
        self._check_finite({}, 0, 0, force=True)
        if self.scheduler_interval == "epoch":
            for scheduler in self.schedulers.values():
                scheduler.step()
        keys = list(sums)
        stats = torch.stack([torch.as_tensor(sums[k], dtype=torch.float32, device=self.device) for k in keys]
                            + [torch.tensor(float(count), device=self.device)])
        values = (all_reduce_sum(stats)[:-1] / stats[-1]).tolist()
        record: dict[str, float] = {"epoch": self.epoch + 1}
        record.update({self.rename.get(k, k): v for k, v in zip(keys, values)})
        if trace:
            self._keep_trace(trace, history)
        if at_epoch_end is not None:
            record.update(at_epoch_end(self.epoch))
        for name, opt in self.optimizers.items():  # "lr", or "lr_<name>" for each of several optimizers
            record["lr" if len(self.optimizers) == 1 else f"lr_{name}"] = opt.param_groups[0]["lr"]
        history.records.append(record)
        return record

    def _keep_trace(self, trace: list[dict[str, Any]], history: History) -> None:
        names = list(trace[0]) if self.trace is True else list(self.trace)  # type: ignore[arg-type]
        columns = []
        for name in names:
            values = [row[name] for row in trace]
            if all(isinstance(v, torch.Tensor) for v in values):
                columns.append(torch.stack(values).float())
            else:  # numbers (constant weights): one copy to the device for the whole column
                columns.append(torch.tensor([float(v) for v in values], device=self.device))
        rows = all_reduce_sum(torch.stack(columns)) / self.world
        for name, column in zip(names, rows.tolist()):
            history.steps.setdefault(name, []).extend(column)

    def _progress_bar(self, total: int) -> Any:
        if self.show:
            from tqdm.auto import tqdm
        else:  # no widget machinery (and no IProgress warning) when the bar is hidden
            from tqdm import tqdm
        # one refresh a second at most: a flood of progress messages can stall notebook runners
        return tqdm(total=total, desc=self.desc, disable=not self.show, leave=False, unit="step", mininterval=1.0)

    # ------------------------------------------------------------------ checkpoints

    def training_state(self, loader: Any, history: History, best: _Best, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch``, as a nest :func:`~tlcourse.train.state.save_state` takes."""
        sampler = getattr(loader, "sampler", None)
        source = loader if hasattr(loader, "state_dict") else sampler if hasattr(sampler, "state_dict") else None
        return {
            "epoch": epoch + 1,
            "history": history.to_dict(),
            "modules": {n: m.state_dict() for n, m in self.modules.items() if n not in self.frozen},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "data": source.state_dict() if source is not None else None,
            "objects": {n: o.state_dict() for n, o in self.state.items()},
            "best": best.state,
        }

    def _save(self, loader: Any, history: History, best: _Best, epoch: int) -> None:
        if self.checkpoint is not None and self.rank == 0:
            save_state(self.checkpoint, self.training_state(loader, history, best, epoch))

    def _can_resume(self) -> bool:
        return self.resume and self.checkpoint is not None and self.checkpoint.exists()

    def _load(self, loader: Any, history: History, best: _Best) -> int:
        state = load_state(self.checkpoint)  # type: ignore[arg-type]
        for kind, objects in (("modules", self.modules), ("optimizers", self.optimizers),
                              ("schedulers", self.schedulers), ("objects", self.state)):
            for name, saved in state[kind].items():
                objects[name].load_state_dict(saved)
        self.scaler.load_state_dict(state["scaler"])
        sampler = getattr(loader, "sampler", None)
        source = loader if hasattr(loader, "load_state_dict") else sampler if hasattr(sampler, "load_state_dict") \
            else None
        if source is not None and state["data"] is not None:
            source.load_state_dict(state["data"])
        history.load_dict(state["history"])
        best.state = state["best"]
        set_rng_state(state["rng"])
        return int(state["epoch"])


def _metric(value: Any) -> torch.Tensor | float:
    """A step's metric as the engine keeps it: a float32 tensor out of the graph, or a float."""
    if not isinstance(value, torch.Tensor):
        return float(value)
    if value.requires_grad:
        value = value.detach()
    return value if value.dtype == torch.float32 else value.float()


class _Best:
    """The best epoch of a monitored metric, and early stopping on it."""

    def __init__(self, monitor: str | None, patience: int | None) -> None:
        if patience is not None:
            check_int("early_stopping", patience, minimum=1)
            if monitor is None:
                raise ValueError("early_stopping needs a metric to monitor")
        self.monitor, self.patience = monitor, patience
        self.sign = 1.0 if monitor is None or monitor.endswith("loss") else -1.0
        self.state: dict[str, Any] | None = None  # best weights (with early stopping)

    def update(self, record: Mapping[str, float], epoch: int, history: History, engine: Engine) -> bool:
        """Note ``record``; return whether to stop."""
        value = record.get(self.monitor) if self.monitor else None
        if value is None:
            return False
        best = history.records[history.best_epoch][self.monitor] if history.best_epoch is not None else None
        if best is None or self.sign * value < self.sign * best:
            history.best_epoch = epoch
            if self.patience is not None:
                self.state = {n: copy.deepcopy(m.state_dict()) for n, m in engine.modules.items()
                              if n not in engine.frozen}
        stale = epoch - (history.best_epoch if history.best_epoch is not None else epoch)
        return self.patience is not None and stale >= self.patience

    def restore(self, engine: Engine) -> None:
        if self.patience is not None and self.state is not None:
            for name, saved in self.state.items():
                engine.modules[name].load_state_dict(saved)
