"""Helpers for data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

:func:`tlcourse.train.fit` needs nothing from you under ``torchrun``: it detects the process
group, wraps the model in ``DistributedDataParallel``, shards the data with a
``DistributedSampler``, all-reduces its metrics and writes checkpoints from rank 0 only. This
module starts and ends the process group from the environment ``torchrun`` sets::

    torchrun --nproc_per_node=4 train.py            # one machine, 4 GPUs
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 train.py

and inside ``train.py``::

    from tlcourse.distributed import setup, cleanup, is_main_process
    setup()                      # nccl on GPUs, gloo on CPUs
    history = fit(model, data, epochs=5)
    if is_main_process(): print(history.last)
    cleanup()
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["setup", "cleanup", "is_distributed", "rank", "world_size", "is_main_process"]


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
