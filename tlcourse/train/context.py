"""What a manual step sees: :class:`StepContext` in the engine, :class:`PlainContext` in your own loop.

A manual step (GANs and ADDA alternating two optimizers, PCGrad and GradNorm writing gradients
themselves) receives a context and calls ``ctx.zero_grad(opt)``, ``ctx.backward(loss)`` and
``ctx.step(opt)``. In the engine these scale the loss for float16, divide it for gradient
accumulation, average the gradients over processes, unscale, clip and update; with
:class:`PlainContext` they are plain PyTorch, so a method's update function runs unchanged in a
user's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tlcourse.train.engine import Engine

__all__ = ["StepContext", "PlainContext"]


class StepContext:
    """What a manual step may ask of the engine (see the module docstring).

    Attributes:
        device, rank, world_size: where this process computes, and its place among the processes.
        epoch, index: the current epoch and batch index (0-based).
        boundary: whether this batch ends an accumulation window (optimizers step only then).
    """

    def __init__(self, engine: Engine, epoch: int, index: int, boundary: bool, divisor: int) -> None:
        self._engine = engine
        self.device, self.rank, self.world_size = engine.device, engine.rank, engine.world
        self.epoch, self.index, self.boundary, self._divisor = epoch, index, boundary, divisor

    @property
    def loss_scale(self) -> torch.Tensor | float:
        """What to multiply an objective by before back-propagating it yourself (fp16 scale / accumulation)."""
        scaler = self._engine.scaler
        scale = scaler.scale(torch.ones((), device=self.device)) if scaler.is_enabled() else 1.0
        return scale / self._divisor if self._divisor != 1 else scale

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """``loss.backward()`` with the fp16 loss scale and the accumulation divisor, outside autocast."""
        self._engine._backward(loss, self._divisor, retain_graph)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients over processes, unscale, clip and update (only at a boundary)."""
        if self.boundary:
            self._engine._optimizer_step(optimizer)

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """Clear ``optimizer``'s gradients, unless they are being accumulated over batches."""
        if self.index % self._engine.accumulate == 0:
            optimizer.zero_grad(set_to_none=True)


class PlainContext:
    """The context of a manual step outside the engine: plain ``backward``, ``step`` and ``zero_grad``.

    The method-level steps (``adda_step``, ``pixel_da_step``, ...) run their update with it, so
    a user's own loop and the engine execute the very same code.
    """

    loss_scale = 1.0
    boundary = True

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        loss.backward(retain_graph=retain_graph)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
