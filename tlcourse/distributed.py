"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

Every training loop of the package (:func:`tlcourse.train.fit` and the method loops built on
the same engine) needs nothing from you under ``torchrun``: it detects the process group, gives
each process its slice of every global batch, averages the gradients, all-reduces its metrics
on the device and writes checkpoints from rank 0 only. This module starts and ends the process
group from the environment ``torchrun`` sets::

    torchrun --nproc_per_node=4 train.py            # one machine, 4 GPUs
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 train.py

and inside ``train.py``::

    from tlcourse.distributed import setup, cleanup, is_main_process
    setup()                      # nccl on GPUs, gloo on CPUs
    history = fit(model, data, epochs=5)
    if is_main_process(): print(history.last)
    cleanup()

It also holds the few collective helpers the loops share: averaging tensors and gradients,
gathering features *with* their gradient (contrastive losses), and :class:`SyncBatchNorm`, a
batch norm whose statistics span every process on any device (PyTorch's own
:class:`torch.nn.SyncBatchNorm` runs on GPUs only; :func:`convert_sync_batchnorm` picks it
there). Every helper is a no-op without a process group.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "setup",
    "cleanup",
    "is_distributed",
    "rank",
    "world_size",
    "is_main_process",
    "all_reduce_sum",
    "all_reduce_mean",
    "average_gradients",
    "gather_with_grad",
    "rank_slice",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
]


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 (or without distribution): log and save only there."""
    return rank() == 0


def setup(backend: str | None = None) -> None:
    """Initialise the process group from ``torchrun``'s environment (no-op without it).

    ``backend=None`` picks ``nccl`` when CUDA is available, else ``gloo``; on GPUs each process
    uses the device ``LOCAL_RANK``.
    """
    if is_distributed() or "RANK" not in os.environ:
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo", "mpi"):
        raise ValueError(f"backend must be one of ['nccl', 'gloo', 'mpi'], got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)


def cleanup() -> None:
    """Destroy the process group (no-op without one)."""
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place and on its own device (NCCL needs GPU tensors).

    Inside a process group the collective runs even with one process, so a single-GPU run under
    ``torchrun`` exercises the same path as a multi-GPU one.
    """
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a new tensor; ``tensor`` itself without a group)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / world_size()


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each ``.grad`` by its mean over all processes (one flat all-reduce per dtype).

    What ``DistributedDataParallel`` does during ``backward``, done at once afterwards: used for
    modules the step does not call through their ``forward`` (a backbone and a head called
    separately, a discriminator in a GAN, gradients written by a multi-task weighting). Every
    process must hold gradients for the same parameters.
    """
    world = world_size()
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault((g.dtype, g.device), []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= world
        for g, part in zip(group, flat.split([g.numel() for g in group])):
            g.copy_(part.view_as(g))


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping the gradient path to each part.

    ``torch.distributed.nn.functional.all_gather`` back-propagates: the gradient reaching the
    rows of process ``r`` is summed over every process's loss and sent back to ``r``. This is how
    a contrastive loss sees the negatives of the global batch (open_clip's ``gather_with_grad``).
    All processes must pass tensors of the same shape.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # torch 2.9+ points to a private replacement; this one is public
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def rank_slice(global_batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of a global batch (of indices, noise, ...), split evenly."""
    world = world_size()
    return global_batch if world == 1 else global_batch.tensor_split(world)[rank()]


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, on any device.

    In training mode under a process group, the per-channel sum and sum of squares (and the
    count) are all-reduced *with gradient* (``torch.distributed.nn.functional.all_reduce``), so
    forward and backward equal a single process's batch norm over the concatenated batch. With
    one process, or in eval mode, it is an ordinary batch norm. Built by
    :func:`convert_sync_batchnorm` on CPUs (and other non-CUDA devices).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [d for d in range(x.dim()) if d != 1]
        c, shape = x.shape[1], [1, x.shape[1]] + [1] * (x.dim() - 2)
        xf = x.float()
        count = xf.new_tensor([x.numel() / c])
        totals = all_reduce(torch.cat([xf.sum(dims), count]))  # two passes: stable variance
        n = totals[c]
        mean = totals[:c] / n
        centred = xf - mean.view(shape)
        var = all_reduce(centred.pow(2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / self.num_batches_tracked.float() if self.momentum is None else self.momentum
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Swap every batch-norm layer of ``module`` for a synchronised one (in place where possible).

    On CUDA this is :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`; elsewhere each layer
    becomes a :class:`SyncBatchNorm` sharing the same parameters and buffers, so optimizers built
    before the conversion keep working.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        new._forward_pre_hooks.update(module._forward_pre_hooks)  # e.g. tlcourse.finetune.freeze's hook
        if hasattr(module, "_tlcourse_frozen_bn_hook"):
            new._tlcourse_frozen_bn_hook = module._tlcourse_frozen_bn_hook
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module

