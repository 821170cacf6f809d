"""Data for every loop: one data contract, global batches sharded over processes, batches to the device.

**One contract.** Every loop takes a map-style ``Dataset`` of ``(input, label)`` pairs or a
``DataLoader``; an ``(inputs, labels)`` pair of tensors, or a bare tensor of unlabelled inputs
(target images in domain adaptation), is wrapped for you (:func:`as_dataset`).

**Global batches.** Under ``torchrun`` with ``W`` processes every loop draws the *global* batch
of ``W × batch_size`` examples exactly as a single process with that batch size would (same
generator, same order) and each process takes its contiguous slice (:func:`rank_slice
<tlcourse.distributed.rank_slice>`). So a 2-process run trains on the very batches of a
1-process run with twice the batch size, shuffled or not, and its result is the same up to
floating-point rounding. :class:`ShardedSampler` does this for a ``DataLoader`` (it is a
:class:`~torch.utils.data.DistributedSampler`, with ``set_epoch``); :class:`PairedBatches`
(source and target batches of domain adaptation) and :class:`RandomBatches` (batches drawn with
replacement, one per task) do it for the loops that draw indices themselves. Unlike a plain
``DistributedSampler``, which deals out every ``W``-th index of a permutation seeded by
``seed + epoch``, this keeps the data order independent of ``W``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset, default_collate

from tlcourse.checks import check_int
from tlcourse.distributed import rank, rank_slice, world_size

__all__ = [
    "as_dataset",
    "make_loader",
    "ShardedSampler",
    "PairedBatches",
    "ZippedLoaders",
    "paired_loader",
    "RandomBatches",
    "fetch",
    "to_device",
    "split_batch",
    "checked_collate",
]

Batch = tuple[Any, torch.Tensor]


def _world() -> tuple[int, int]:
    return rank(), world_size()


def _quiet() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TLCOURSE_QUIET"))


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
        return TensorDataset(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        inputs, labels = data
        if len(inputs) != len(labels):
            raise ValueError(f"{name} inputs and labels must have the same length, got {len(inputs)} and {len(labels)}")
        if len(inputs) == 0:
            raise ValueError(f"{name} is empty: expected at least one example")
        return TensorDataset(inputs, labels)
    raise TypeError(
        f"{name} must be a torch Dataset of (input, label), a DataLoader, an (inputs, labels) pair of tensors"
        f"{'' if labelled else ' or a tensor of unlabelled inputs'}, got {type(data).__name__}"
    )


class ShardedSampler(DistributedSampler):
    """Indices of this process's slice of each global batch (see the module docstring).

    The order is a permutation drawn from ``generator`` (or ``0..n-1`` without ``shuffle``) and
    is cut into global batches of ``batch_size × W``; this process yields its contiguous
    ``batch_size`` of each. With ``seed`` given, :meth:`set_epoch` reseeds the generator with
    ``1000 · seed + epoch`` (epochs repeat exactly on resume); without, it keeps drawing. A last,
    incomplete global batch is split as evenly as possible; with ``even=True`` (training) one
    smaller than ``W`` is dropped so that every process takes the same number of steps.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int | None,
                 generator: torch.Generator | None, even: bool = True) -> None:
        super().__init__(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed or 0)
        self.seed = seed
        self.batch_size, self.generator, self.even = batch_size, generator, even

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.shuffle and self.seed is not None and self.generator is not None:
            self.generator.manual_seed(self.seed * 1000 + epoch)

    def _parts(self) -> list[int]:
        n, glob = len(self.dataset), self.batch_size * self.num_replicas  # type: ignore[arg-type]
        sizes = [len(p) for p in torch.arange(n % glob).tensor_split(self.num_replicas)] if n % glob else []
        if self.even and sizes and min(sizes) == 0:
            sizes = []
        return [self.batch_size] * (n // glob) + ([sizes[self.rank]] if sizes else [])

    def __len__(self) -> int:
        return sum(self._parts())

    def __iter__(self) -> Iterator[int]:
        n, world = len(self.dataset), self.num_replicas  # type: ignore[arg-type]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        glob = self.batch_size * world
        for start in range(0, min(n, glob * len(self._parts())), glob):
            yield from order[start : start + glob].tensor_split(world)[self.rank].tolist()
        if self.shuffle and self.generator is not None:
            torch.randperm(n, generator=self.generator)  # as RandomSampler does: same draws as a shuffled DataLoader

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state() if self.generator is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])


def _describe(x: Any) -> str:
    return f"{type(x).__name__} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def checked_collate(batch: list[Any]) -> Any:
    """``default_collate`` that explains the two usual failures with a practitioner's own images.

    PIL images (an ``ImageFolder`` without a transform) and images of different sizes make
    ``default_collate`` fail deep inside torch; here the error says which transform is missing.
    Costs nothing when collation succeeds.
    """
    try:
        return default_collate(batch)
    except (TypeError, RuntimeError) as err:
        first = batch[0][0] if batch and isinstance(batch[0], (tuple, list)) else (batch[0] if batch else None)
        if type(first).__module__.startswith("PIL"):
            raise TypeError(
                "the dataset returns PIL images, which cannot be batched: give it a transform that makes tensors in "
                "[0, 1], e.g. ImageFolder(root, transform=model.preprocess) (resizes to the model's size) or "
                "torchvision.transforms.ToTensor()"
            ) from err
        inputs = [item[0] if isinstance(item, (tuple, list)) else item for item in batch]
        shapes = {tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor)}
        if len(shapes) > 1:
            raise ValueError(
                f"the dataset returns inputs of different shapes in one batch ({sorted(shapes)[:3]}...): resize "
                "images to one size (transform=model.preprocess resizes to the model's size, or "
                "torchvision.transforms.Resize)"
            ) from err
        raise TypeError(f"could not batch the dataset's items (first input: {_describe(first)}): {err}") from err


def make_loader(
    data: Dataset | DataLoader,
    batch_size: int,
    shuffle: bool,
    device: torch.device,
    seed: int | None = None,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
    even: bool = True,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader for ``data`` (returned unchanged if it already is one).

    ``batch_size`` is per process: the loader reads this process's slice of each global batch
    (:class:`ShardedSampler`). Pinned memory is used when copying to a GPU. ``even=False``
    (evaluation) keeps every example, even when the processes then get different counts.
    Shuffling draws from ``generator`` when given (its stream simply continues from epoch to
    epoch), else from a generator seeded with ``seed`` and reseeded every epoch.
    """
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a torch Dataset or DataLoader, got {type(data).__name__}")
    if len(data) == 0:  # type: ignore[arg-type]
        raise ValueError("data is empty: expected at least one example")
    check_int("batch_size", batch_size, minimum=1)
    if generator is None:
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.initial_seed() % 2**63)
    else:
        seed = None  # the caller's generator is never reseeded
    generator = generator if shuffle else None
    sampler = ShardedSampler(data, batch_size, shuffle=shuffle, seed=seed, generator=generator, even=even)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_fn or checked_collate,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )


def fetch(dataset: Dataset, index: torch.Tensor) -> Any:
    """The examples ``index`` of ``dataset`` as one collated batch (tensor-backed data: one indexing)."""
    if isinstance(dataset, TensorDataset):
        return tuple(t[index] for t in dataset.tensors)
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    tensors = isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)
    if tensors and getattr(dataset, "transform", 1) is None:
        return images[index], labels[index]
    rows = index.tolist()
    items = dataset.__getitems__(rows) if hasattr(dataset, "__getitems__") else [dataset[i] for i in rows]
    return checked_collate(items)


class _GeneratorState:
    """``state_dict``/``load_state_dict`` of a batch source that draws from one ``torch.Generator``."""

    generator: torch.Generator

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class PairedBatches(_GeneratorState):
    """One epoch over the source: this process's ``(source_batch, target_batch)`` slices.

    The source is shuffled and cut into global batches of ``W·batch_size`` (the last, incomplete
    one dropped unless ``drop_last=False``); target batches come from a shuffled pass over the
    target, restarted whenever it runs out (book Section 6.3). All indices come from
    ``generator``, so steps that draw noise from it (:attr:`generator`) stay reproducible.
    ``target=None`` yields ``(source_batch, None)``; ``transform`` is applied to each source batch
    on the host (e.g. trimming padding).
    """

    def __init__(self, source: Dataset, target: Dataset | None, batch_size: int, generator: torch.Generator,
                 drop_last: bool = True, transform: Callable[[Any], Any] | None = None) -> None:
        self.source, self.target, self.generator = source, target, generator
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.global_batch = self.batch_size * world_size()
        self.drop_last, self.transform = drop_last, transform

    def __len__(self) -> int:
        n = len(self.source)  # type: ignore[arg-type]
        if self.drop_last:
            return max(1, n // self.global_batch)
        full, rest = divmod(n, self.global_batch)
        return full + (1 if rest >= world_size() or (rest and full == 0) else 0)  # every process needs a share

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        steps = len(self)
        perm_s = torch.randperm(len(self.source), generator=self.generator)  # type: ignore[arg-type]
        perm_t = None
        if self.target is not None:
            n_t, needed = len(self.target), steps * self.global_batch  # type: ignore[arg-type]
            perm_t = torch.cat([torch.randperm(n_t, generator=self.generator) for _ in range(math.ceil(needed / n_t))])
        for i in range(steps):
            sl = slice(i * self.global_batch, (i + 1) * self.global_batch)
            source = fetch(self.source, rank_slice(perm_s[sl]))
            if self.transform is not None:
                source = self.transform(source)
            target = fetch(self.target, rank_slice(perm_t[sl][: len(perm_s[sl])])) if perm_t is not None else None
            yield source, target


class ZippedLoaders:
    """Batches of a caller's ``DataLoader`` for the source, each paired with a target batch.

    The target (a ``DataLoader``, or a dataset read in shuffled batches of the same size drawn
    from ``generator``) restarts whenever it runs out. The loaders are used as they are: under
    ``torchrun`` give them a ``DistributedSampler``. ``target=None`` yields ``(batch, None)``.
    """

    def __init__(self, source: DataLoader, target: Dataset | DataLoader | None, generator: torch.Generator) -> None:
        self.source, self.generator = source, generator
        if target is not None and not isinstance(target, DataLoader):
            target = DataLoader(target, batch_size=source.batch_size or 1, shuffle=True, generator=generator)
        self.target = target

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        for loader in (self.source, self.target):
            if loader is not None and hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        targets = iter(self.target) if self.target is not None else None
        for batch in self.source:
            if targets is None:
                yield batch, None
                continue
            try:
                target = next(targets)
            except StopIteration:
                targets = iter(self.target)
                target = next(targets)
            yield batch, target

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def paired_loader(source: Dataset | DataLoader, target: Dataset | DataLoader | None, batch_size: int,
                  generator: torch.Generator, **options: Any) -> PairedBatches | ZippedLoaders:
    """:class:`PairedBatches` for datasets, :class:`ZippedLoaders` when the source is a ``DataLoader``."""
    if isinstance(source, DataLoader):
        return ZippedLoaders(source, target, generator)
    if isinstance(target, DataLoader):
        raise TypeError("target may be a DataLoader only when source is one too (pass the target dataset instead)")
    return PairedBatches(source, target, batch_size, generator, **options)


class RandomBatches(_GeneratorState):
    """Batches drawn with replacement, one per named dataset: ``steps`` per epoch, ``total`` in all.

    Each step draws ``W × sizes[name]`` indices per dataset from ``generator`` (in the order of
    ``datasets``) and yields this process's slices as ``{name: batch}``. This is how multi-task
    learning samples a small task without running out of it. With ``total`` the last epoch
    is cut short so that exactly ``total`` steps are drawn.
    """

    def __init__(self, datasets: Mapping[str, Dataset], sizes: Mapping[str, int], steps: int,
                 generator: torch.Generator, total: int | None = None) -> None:
        self.datasets, self.sizes, self.generator = dict(datasets), dict(sizes), generator
        self.steps = check_int("steps", steps, minimum=1)
        self.total, self.epoch = total, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.total is None:
            return self.steps
        return max(0, min(self.steps, self.total - self.epoch * self.steps))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        world = world_size()
        for _ in range(len(self)):
            batch = {}
            for name, data in self.datasets.items():
                index = torch.randint(len(data), (self.sizes[name] * world,), generator=self.generator)
                batch[name] = fetch(data, rank_slice(index))
            yield batch


def to_device(inputs: Any, device: torch.device, channels_last: bool = False) -> Any:
    """``inputs`` (tensors, or dicts/lists/tuples of them) on ``device``, copied without blocking.

    With ``channels_last``, 4-D floating-point tensors (image batches) also switch to the
    channels-last memory format (faster convolutions on GPUs and recent CPUs).
    """
    if isinstance(inputs, torch.Tensor):
        out = inputs.to(device, non_blocking=True)
        if channels_last and out.ndim == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(inputs, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(to_device(v, device, channels_last) for v in inputs)
    return inputs


def split_batch(batch: Any) -> Batch:
    """``(inputs, labels)`` of a batch given as a pair or as a dict with a ``"labels"`` key."""
    if isinstance(batch, Mapping) and "labels" in batch:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inputs, batch["labels"]
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("each batch must be (inputs, labels) or a dict with a 'labels' key")
