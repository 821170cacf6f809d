"""Worker for tests/test_distributed.py, launched with torchrun (2 CPU processes, gloo)."""

import sys

import torch
from torch import nn

from tlcourse.checkpoint import save_weights
from tlcourse.distributed import cleanup, is_main_process, setup, world_size
from tlcourse.train import fit


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    return torch.utils.data.TensorDataset(x, y), model


if __name__ == "__main__":
    out, global_batch = sys.argv[1], int(sys.argv[2])
    setup("gloo")
    data, model = problem()
    history = fit(model, data, epochs=3, batch_size=global_batch // world_size(), shuffle=False, device="cpu",
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    if is_main_process():
        save_weights(out, model, {"world_size": world_size(), "train_loss": history.last["train_loss"]})
    cleanup()
