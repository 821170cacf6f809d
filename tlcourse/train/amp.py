"""Mixed precision: the autocast context every loop runs its forward passes in, and loss scaling.

``amp=True`` picks bfloat16 where the device supports it (recent GPUs, CPUs) and float16
elsewhere on CUDA; ``"bf16"`` and ``"fp16"`` force one. float16 has a narrow exponent range, so
small gradients underflow to zero unless the loss is multiplied by a large factor before the
backward pass and the gradients divided by it before the optimizer step: that is
:class:`torch.amp.GradScaler` (torch ≥ 2.3), which the engine uses whenever the dtype is float16.
bfloat16 has float32's range and needs no scaling.
"""

from __future__ import annotations

import contextlib

import torch

from tlcourse.checks import check_choice

__all__ = ["autocast_context", "amp_dtype", "make_grad_scaler"]


def amp_dtype(device: torch.device, amp: bool | str | None) -> torch.dtype | None:
    """The autocast dtype ``amp`` asks for on ``device`` (``None``: full precision)."""
    if amp is False or amp is None:
        return None
    check_choice("amp", amp, (True, "bf16", "fp16"))
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, amp: bool | str) -> contextlib.AbstractContextManager:
    """Mixed-precision context: ``amp=True`` picks bf16 where supported, else fp16 on CUDA."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, amp: bool | str | None) -> torch.amp.GradScaler:
    """A :class:`torch.amp.GradScaler`, enabled exactly when the autocast dtype is float16."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device, amp) == torch.float16)
