"""fit() under torchrun: 2 CPU processes (gloo) match one process on the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tlcourse.checkpoint import load_weights
from tlcourse.train import fit

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import problem  # noqa: E402


def test_two_processes_match_single_process(tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / "ddp_worker.py"), str(out), "16"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    data, single = problem()
    history = fit(single, data, epochs=3, batch_size=16, shuffle=False, device="cpu",
                  optimizer=torch.optim.SGD(single.parameters(), lr=0.5))
    _, ddp_model = problem()
    meta = load_weights(out, ddp_model)
    assert meta["world_size"] == 2
    for a, b in zip(single.parameters(), ddp_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert meta["train_loss"] == pytest.approx(history.last["train_loss"], rel=1e-5)


def test_setup_is_a_no_op_without_torchrun(monkeypatch):
    from tlcourse import distributed

    monkeypatch.delenv("RANK", raising=False)
    distributed.setup()
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main_process()
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="backend"):
        distributed.setup("tcp")
