"""``predict`` and ``predict_names``: a model's outputs for your data, in your data's order.

:func:`predict` takes what a practitioner has at hand and returns one row of logits per example,
**in dataset order** whatever the loader does (a shuffled ``DataLoader``, or the length-grouped
batches of :func:`tlcourse.data.make_text_loader`, which visit texts by length):

* a ``Dataset`` of ``(input, label)`` or a ``DataLoader`` of such batches (labels ignored);
* a tensor batch of inputs ``(N, ...)``;
* a PIL image or a list of them (through the model's ``preprocess``, or ``preprocess=``);
* a string or a list of strings (through the model's ``tokenizer``, or ``tokenizer=``).

:func:`predict_names` returns the predicted class *names*: the model's ``class_names`` (set by
:class:`~tlcourse.models.SmallResNet`, :func:`~tlcourse.models.load_pretrained`,
:func:`~tlcourse.models.replace_head`, :func:`~tlcourse.train.fit` from the data's ``classes``,
and restored by :func:`~tlcourse.checkpoint.load_weights` / :func:`~tlcourse.models.lora.load_lora`)
or the ``class_names`` you pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from tlcourse.checks import check_int
from tlcourse.train.amp import autocast_context
from tlcourse.train.loaders import make_loader, to_device
from tlcourse.utils import get_device

__all__ = ["predict", "predict_names", "in_dataset_order", "model_class_names"]


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


def _inputs_of(batch: Any) -> Any:
    """The inputs of a batch: ``(inputs, labels)``, ``(inputs,)``, a dict (without ``labels``) or a tensor."""
    if isinstance(batch, Mapping):
        return {k: v for k, v in batch.items() if k != "labels"}
    if isinstance(batch, (list, tuple)) and len(batch) in (1, 2):
        return batch[0]
    if isinstance(batch, torch.Tensor):
        return batch
    raise ValueError("each batch must be (inputs, labels), (inputs,), a dict of tensors or a tensor of inputs")


def in_dataset_order(loader: DataLoader) -> tuple[DataLoader, list[int] | None]:
    """A loader that replays one pass of ``loader``'s batches, and the dataset index of each row.

    The batch sampler is drawn once (a shuffled one draws a fresh order, as iterating would);
    the rows can then be put back in dataset order. ``None`` when the order cannot be known
    (an iterable dataset, or no batch sampler).
    """
    if isinstance(loader.dataset, IterableDataset) or loader.batch_sampler is None:
        return loader, None
    batches = [[int(i) for i in b] for b in loader.batch_sampler]
    replay = DataLoader(loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn,
                        num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                        worker_init_fn=loader.worker_init_fn, timeout=loader.timeout)
    return replay, [i for b in batches for i in b]


def _is_image(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, Image.Image)


def _as_batches(model: nn.Module, data: Any, batch_size: int, dev: torch.device, collate_fn: Callable | None,
                preprocess: Callable | None, tokenizer: Callable | None,
                max_length: int) -> tuple[Any, list[int] | None]:
    """An iterable of batches for ``data`` and, when it reorders, the dataset index of each row."""
    if _is_image(data) or isinstance(data, str):
        data = [data]
    if isinstance(data, (list, tuple)) and data and all(_is_image(x) for x in data):
        prep = preprocess or getattr(model, "preprocess", None)
        if not callable(prep):
            raise TypeError("data holds PIL images but the model has no preprocess: pass preprocess=... "
                            "(e.g. torchvision's ToTensor()), or tensors")
        starts = range(0, len(data), batch_size)
        return [(torch.stack([prep(im) for im in data[i:i + batch_size]]),) for i in starts], None
    if isinstance(data, (list, tuple)) and data and all(isinstance(x, str) for x in data):
        tok = tokenizer or getattr(model, "tokenizer", None)
        if not callable(tok):
            raise TypeError("data holds strings but the model has no tokenizer: pass tokenizer=... "
                            "(e.g. the one load_text_encoder returned) or set model.tokenizer")
        out = []
        for i in range(0, len(data), batch_size):
            enc = tok(list(data[i:i + batch_size]), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        return out, None
    if isinstance(data, torch.Tensor):
        if data.ndim == 0 or len(data) == 0:
            raise ValueError(f"data must be a non-empty batch of inputs (N, ...), got shape {tuple(data.shape)}")
        data = TensorDataset(data)
    if isinstance(data, DataLoader):
        return in_dataset_order(data)
    if isinstance(data, Dataset):
        return make_loader(data, batch_size, False, dev, collate_fn=collate_fn, even=False), None
    raise TypeError("data must be a Dataset, a DataLoader, a tensor batch of inputs, a PIL image or a list of them, "
                    f"or a list of strings, got {type(data).__name__}")


def predict(
    model: nn.Module,
    data: Dataset | DataLoader | torch.Tensor | Any,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool | str = False,
    collate_fn: Callable | None = None,
    preprocess: Callable | None = None,
    tokenizer: Callable | None = None,
    max_length: int = 128,
) -> torch.Tensor:
    """Logits ``(N, C)`` of ``model`` for every example of ``data``, in dataset order, on the CPU.

    ``data`` may be a Dataset, a DataLoader (any sampler: the rows are put back in dataset
    order), a tensor batch, a PIL image or a list of them (through ``preprocess`` or
    ``model.preprocess``) or a list of strings (through ``tokenizer`` or ``model.tokenizer``,
    ``max_length`` tokens at most). Runs in eval mode without gradients. Under ``torchrun`` each
    process predicts its own share of a Dataset.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    dev = get_device(device)
    batches, order = _as_batches(model, data, batch_size, dev, collate_fn, preprocess, tokenizer, max_length)
    outs = [logits.float().cpu() for logits in _logits(model, batches, dev, amp)]
    out = torch.cat(outs)
    if order is None:
        return out
    index = torch.as_tensor(order)
    if len(set(order)) != len(order):
        warnings.warn("the loader yields some examples more than once (a sampler with replacement): "
                      "predict returns its rows in the loader's order", stacklevel=2)
        return out
    return out[torch.argsort(index)]


def _logits(model: nn.Module, batches: Any, dev: torch.device, amp: bool | str) -> Iterator[torch.Tensor]:
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                with autocast_context(dev, amp):
                    yield _forward(model, to_device(_inputs_of(batch), dev))
    finally:
        model.train(was_training)


def model_class_names(model: nn.Module) -> list[str] | None:
    """The ``class_names`` of ``model`` (looking through DDP/compile wrappers), or ``None``."""
    for m in (model, getattr(model, "module", None), getattr(model, "_orig_mod", None)):
        names = getattr(m, "class_names", None)
        if names is not None:
            return list(names)
    return None


def predict_names(model: nn.Module, data: Any, *, class_names: Sequence[str] | None = None, **kwargs: Any) -> list[str]:
    """The predicted class name of every example of ``data`` (dataset order), see :func:`predict`.

    Names come from ``class_names`` or the model's ``class_names``; other keyword arguments go
    to :func:`predict`.
    """
    names = list(class_names) if class_names is not None else model_class_names(model)
    if names is None:
        raise ValueError("model has no class_names: pass class_names=[...] (one name per output), or build the "
                         "model with them (e.g. load_pretrained(class_names=...), or fit() on a dataset with .classes)")
    logits = predict(model, data, **kwargs)
    if logits.ndim != 2 or logits.shape[1] != len(names):
        raise ValueError(f"class_names must name each of the model's {logits.shape[-1]} outputs, "
                         f"got {len(names)} names")
    return [names[i] for i in logits.argmax(1).tolist()]
