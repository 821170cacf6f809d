"""Every training loop, resumed after an interruption (bitwise) and under mixed precision on the CPU.

The loops are the cases of tests/engine_cases.py (two epochs each, models with batch norm, every
kind of method state: DANN's step counter, DWA's loss history, GradNorm's first losses, PCGrad's
generator, learning-rate schedules, the data order).
"""

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_cases import CASES, comparable, flat_state  # noqa: E402

from tlcourse.train.engine import Engine  # noqa: E402


@pytest.mark.parametrize("name", list(CASES))
def test_every_loop_resumes_bitwise_after_an_interruption(name, tmp_path, monkeypatch):
    modules, expected = CASES[name]()
    reference = flat_state(modules)
    save = Engine._save

    def crash_after_the_first_epoch(self, loader, history, best, epoch):
        save(self, loader, history, best, epoch)
        if epoch == 0:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.safetensors"
    monkeypatch.setattr(Engine, "_save", crash_after_the_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        CASES[name](checkpoint=ckpt)
    monkeypatch.setattr(Engine, "_save", save)
    modules, history = CASES[name](checkpoint=ckpt, resume=True)
    resumed = flat_state(modules)
    assert set(resumed) == set(reference)
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), f"{name}: {key} differs after resuming"
    assert comparable(history) == comparable(expected)
    assert len(history) == 2


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
@pytest.mark.parametrize("name", list(CASES))
def test_every_loop_trains_under_mixed_precision_on_the_cpu(name, amp, dtype):
    seen = set()

    def note_dtype(module, inputs, output):
        if isinstance(module, nn.Linear) and isinstance(output, torch.Tensor):
            seen.add(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(note_dtype)
    try:
        _, history = CASES[name](amp=amp)
    finally:
        handle.remove()
    assert dtype in seen, f"{name} ran no linear layer in {dtype}"
    assert len(history) == 2
    for record in history.records:
        assert all(math.isfinite(v) for k, v in record.items() if "loss" in k), record
