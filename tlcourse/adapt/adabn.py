"""AdaBN: re-estimate batch-norm statistics on the target domain (Li et al., 2016/2018).

A network with batch normalisation stores, per layer, the mean and variance of its inputs on
the *training* (source) data. Li et al. observed that domain-specific information lives largely
in these statistics: recomputing them on unlabelled target data, weights untouched, is a free
adaptation baseline. Training with separate source and target forward passes (one set of batch
statistics per domain, as :func:`tlcourse.adapt.loop.adaptation_step` does by default) makes a
model expect exactly this at test time.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tlcourse.checks import check_int, check_not_empty, check_tensor
from tlcourse.utils import get_device

__all__ = ["adapt_batchnorm", "has_batchnorm"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains a batch-norm layer that tracks running statistics."""
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def adapt_batchnorm(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 500,
    inplace: bool = False,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Recompute every batch-norm layer's running mean/variance on ``images`` (AdaBN).

    The statistics are exact averages over all of ``images`` (``momentum=None``); weights and
    biases are untouched and no labels are used. Returns the adapted model in eval mode (a copy
    unless ``inplace``).

    Args:
        model: a network with batch-norm layers.
        images: unlabelled inputs of the domain to adapt to.
        batch_size: how many images per forward pass.
        inplace: modify ``model`` itself instead of a copy.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_tensor("images", images, dtype="float")
    check_not_empty("images", images)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not has_batchnorm(model):
        raise ValueError("model has no batch-norm layer with running statistics: AdaBN has nothing to adapt")
    net = model if inplace else copy.deepcopy(model)
    dev = next(net.parameters()).device if device is None else get_device(device)
    net.eval()
    layers = [m for m in net.modules() if isinstance(m, _BN) and m.track_running_stats]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
        m.train()
    try:
        for start in range(0, len(images), batch_size):
            net(images[start : start + batch_size].to(dev, non_blocking=True))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
    return net
