"""Compression utilities: size on disk, pruning, int8 quantization, latency (tlcourse.compress)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlcourse.compress import (
    magnitude_prune,
    measure_latency,
    quantize_dynamic_int8,
    quantize_static_int8,
    size_on_disk,
    sparsity,
)
from tlcourse.models import SmallResNet


def _net() -> SmallResNet:
    torch.manual_seed(0)
    return SmallResNet(10, widths=(8, 16, 32)).eval()


def test_size_on_disk_counts_the_weights():
    linear = nn.Linear(1000, 100)
    assert size_on_disk(linear) >= 4 * (1000 * 100 + 100)
    assert size_on_disk(linear) < 4 * (1000 * 100 + 100) + 10_000


def test_pruning_is_permanent_hits_the_amount_and_leaves_the_original():
    net = _net()
    before = [p.clone() for p in net.parameters()]
    pruned = magnitude_prune(net, 0.5)
    assert abs(sparsity(pruned) - 0.5) < 0.01
    assert sparsity(net) < 0.01
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert not any("weight_orig" in k or "mask" in k for k in pruned.state_dict())
    # the survivors are the largest weights: every pruned weight is no larger than every kept one
    w = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]).abs()
    wp = torch.cat([m.weight.flatten() for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert w[wp == 0].max() <= w[wp != 0].min()
    # dense storage does not shrink, a compressed file does
    assert abs(size_on_disk(pruned) - size_on_disk(net)) < 1000
    assert size_on_disk(pruned, compressed=True) < 0.8 * size_on_disk(net, compressed=True)


def test_layerwise_pruning_prunes_every_layer():
    pruned = magnitude_prune(_net(), 0.3, global_=False)
    for m in pruned.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert abs((m.weight == 0).float().mean().item() - 0.3) < 0.05


def test_dynamic_quantization_shrinks_linear_models_and_keeps_outputs_close():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    q = quantize_dynamic_int8(mlp)
    assert size_on_disk(q) < 0.4 * size_on_disk(mlp)
    x = torch.randn(32, 64)
    assert (q(x) - mlp(x)).abs().max() < 0.05
    assert isinstance(mlp[0], nn.Linear)  # the original is untouched


def test_static_quantization_shrinks_the_resnet_and_keeps_predictions():
    net = _net()
    g = torch.Generator().manual_seed(0)
    calib = torch.rand(128, 3, 28, 28, generator=g)
    q = quantize_static_int8(net, calib)
    assert size_on_disk(q) < 0.5 * size_on_disk(net)
    x = torch.rand(64, 3, 28, 28, generator=g)
    with torch.no_grad():
        agree = (q(x).argmax(1) == net(x).argmax(1)).float().mean().item()
    assert agree >= 0.8


def test_measure_latency_rows():
    rows = measure_latency(_net(), torch.rand(3, 28, 28), batch_sizes=(1, 4), min_run_time=0.01, num_threads=1)
    assert [r["batch_size"] for r in rows] == [1, 4]
    for r in rows:
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0
        assert r["images_per_s"] == pytest.approx(1e3 * r["batch_size"] / r["median_ms"])
