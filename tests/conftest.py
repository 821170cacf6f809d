"""Test settings: offline, quiet, deterministic, headless."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TLCOURSE_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def tiny_images():
    """A small separable 3-class image problem (bright blob in one of three places)."""
    g = torch.Generator().manual_seed(0)
    n = 96
    labels = torch.arange(n) % 3
    images = 0.1 * torch.rand(n, 1, 28, 28, generator=g)
    for i, c in enumerate(labels.tolist()):
        images[i, 0, 4 + 8 * c : 10 + 8 * c, 10:18] = 1.0
    from tlcourse.data import ArrayDataset

    return ArrayDataset(images, labels, ["top", "middle", "bottom"])
