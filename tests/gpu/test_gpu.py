"""GPU tier (``pytest -m gpu tests/gpu``): every loop with fp16/bf16, channels-last and torch.compile,
and a single-process NCCL ``fit`` with validation data. Skipped without CUDA."""

import math
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine_cases import CASES  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _run(name: str, **options):
    seen = set()

    def note(module, inputs, output):
        if isinstance(module, nn.Linear) and isinstance(output, torch.Tensor):
            seen.add((output.dtype, output.device.type))

    handle = nn.modules.module.register_module_forward_hook(note)
    try:
        modules, history = CASES[name](device="cuda", channels_last=True, **options)
    finally:
        handle.remove()
    for record in history.records:
        assert all(math.isfinite(v) for k, v in record.items() if "loss" in k), (name, record)
    return seen, modules


@pytest.mark.parametrize("name", list(CASES))
def test_every_loop_in_fp16_with_grad_scaling_and_channels_last(name):
    seen, modules = _run(name, amp="fp16")
    assert (torch.float16, "cuda") in seen
    assert all(p.device.type == "cuda" for m in modules.values() for p in m.parameters()) or name == "gan_1d"


@pytest.mark.parametrize("name", list(CASES))
def test_every_loop_in_bf16_compiled(name):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    seen, _ = _run(name, amp="bf16", compile=True)
    assert (torch.bfloat16, "cuda") in seen


def test_single_process_nccl_fit_with_validation_data(monkeypatch):
    import torch.distributed as dist

    from tlcourse.train import evaluate, fit

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533", "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    dist.init_process_group("nccl")
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=g)
        data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
        history = fit(model, data, epochs=3, batch_size=32, val_data=data, device="cuda", amp=True,
                      sync_batchnorm=True, early_stopping=2)
        assert history["val_accuracy"][-1] > 0.8
        assert evaluate(model, data, device="cuda")["accuracy"] > 0.8
    finally:
        dist.destroy_process_group()
        os.environ.pop("RANK", None)


def test_gpu_benchmark_runs_through_the_engine():
    from tlcourse import bench

    report = bench.bench_gpu("cuda", steps=5)
    assert report["resnet18_bf16+channels_last_images_per_s"] > 0
