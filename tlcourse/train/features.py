"""Feature extraction: run a (frozen) feature extractor once over a dataset."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlcourse.checks import check_int
from tlcourse.train.loaders import as_dataset, make_loader, to_device
from tlcourse.utils import get_device

__all__ = ["extract_features"]


@torch.no_grad()
def extract_features(
    module: nn.Module,
    data: Any,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features of every example of ``data``, in order: ``(features, labels)`` on the CPU.

    ``module`` maps inputs to feature vectors: pass a model's feature extractor, e.g.
    ``model.backbone`` (or ``model.forward_features`` wrapped in a module). It runs in eval mode
    without gradients, and its train/eval mode is restored afterwards. ``data`` follows the
    package's data contract (a ``Dataset`` of ``(input, label)``, a ``DataLoader``, an
    ``(inputs, labels)`` pair, or a bare tensor of unlabelled inputs, for which ``labels`` is
    ``None``). ``device=None`` computes on the device ``module`` is on.

    This is feature extraction in the strict sense: the features are computed once and any
    classifier (e.g. scikit-learn's logistic regression) or distance can use them.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module (e.g. model.backbone), got {type(module).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    dataset = as_dataset("data", data, labelled=False)
    if device is None:
        param = next(module.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = get_device(device)
        module.to(dev)
    was_training = module.training
    module.eval()
    feats, labels = [], []
    try:
        for batch in make_loader(dataset, batch_size, False, dev):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            feats.append(module(to_device(x, dev)).float().cpu())
            if isinstance(batch, (list, tuple)) and len(batch) > 1:
                labels.append(torch.as_tensor(batch[1]))
    finally:
        module.train(was_training)
    return torch.cat(feats), (torch.cat(labels) if labels else None)
