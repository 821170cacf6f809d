"""Data loading for every loop: DataLoaders (sharded under ``torchrun``), batches to the device."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tlcourse.checks import check_int

__all__ = ["make_loader", "to_device", "split_batch", "as_dataset"]

Batch = tuple[Any, torch.Tensor]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _quiet() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TLCOURSE_QUIET"))


def make_loader(
    data: Dataset | DataLoader,
    batch_size: int,
    shuffle: bool,
    device: torch.device,
    seed: int | None = None,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader for ``data`` (returned unchanged if it already is one).

    Under ``torch.distributed`` each rank reads its own shard (:class:`DistributedSampler`).
    Pinned memory is used when copying to a GPU.
    """
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a torch Dataset or DataLoader, got {type(data).__name__}")
    if len(data) == 0:  # type: ignore[arg-type]
        raise ValueError("data is empty: expected at least one example")
    check_int("batch_size", batch_size, minimum=1)
    rank, world = _world()
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.initial_seed() % 2**63)
    sampler = None
    if world > 1:
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed or 0)
        shuffle = False
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        generator=generator if shuffle else None,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_fn,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )


def to_device(inputs: Any, device: torch.device) -> Any:
    """``inputs`` (a tensor, or dicts/lists/tuples of them) on ``device``, copied without blocking."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, Mapping):
        return {k: to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(to_device(v, device) for v in inputs)
    return inputs


def split_batch(batch: Any) -> Batch:
    """``(inputs, labels)`` of a batch given as a pair or as a dict with a ``"labels"`` key."""
    if isinstance(batch, Mapping) and "labels" in batch:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs, batch["labels"]
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("each batch must be (inputs, labels) or a dict with a 'labels' key")


def as_dataset(name: str, data: Any, labelled: bool = True) -> Dataset | DataLoader:
    """The one data contract of every loop: a map-style ``Dataset`` of ``(input, label)`` or a ``DataLoader``.

    For convenience an ``(inputs, labels)`` pair of tensors is wrapped in a ``TensorDataset``, and
    so is a bare tensor of unlabelled inputs (each item is then a 1-tuple ``(input,)``). With
    ``labelled=True`` a bare tensor is refused: the loop needs labels.
    """
    if isinstance(data, (Dataset, DataLoader)):
        if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
            if len(data) == 0:  # type: ignore[arg-type]
                raise ValueError(f"{name} is empty: expected at least one example")
        return data
    if isinstance(data, torch.Tensor):
        if labelled:
            raise ValueError(f"{name} must carry labels: pass a Dataset of (input, label) or an (inputs, labels) pair")
        if len(data) == 0:
            raise ValueError(f"{name} is empty: expected at least one example")
        return torch.utils.data.TensorDataset(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        inputs, labels = data
        if len(inputs) != len(labels):
            raise ValueError(f"{name} inputs and labels must have the same length, got {len(inputs)} and {len(labels)}")
        if len(inputs) == 0:
            raise ValueError(f"{name} is empty: expected at least one example")
        return torch.utils.data.TensorDataset(inputs, labels)
    raise TypeError(
        f"{name} must be a torch Dataset of (input, label), a DataLoader, an (inputs, labels) pair of tensors"
        f"{'' if labelled else ' or a tensor of unlabelled inputs'}, got {type(data).__name__}"
    )
