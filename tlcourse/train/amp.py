"""Mixed precision: the autocast context every loop runs its forward passes in."""

from __future__ import annotations

import contextlib

import torch

from tlcourse.checks import check_choice

__all__ = ["autocast_context"]


def autocast_context(device: torch.device, amp: bool | str) -> contextlib.AbstractContextManager:
    """Mixed-precision context: ``amp=True`` picks bf16 where supported, else fp16 on CUDA."""
    if amp is False or amp is None:
        return contextlib.nullcontext()
    check_choice("amp", amp, (True, "bf16", "fp16"))
    if amp is True:
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "cpu":
            dtype = torch.bfloat16
        else:
            return contextlib.nullcontext()
    else:
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
