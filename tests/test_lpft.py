"""LP-FT pieces (probe → head, warm-up + cosine, finetune) and the fabric-pattern ImageFolder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tlcourse.data import ArrayDataset
from tlcourse.data.patterns import PATTERN_CLASSES, pattern_image, write_pattern_folder
from tlcourse.lpft import finetune, probe_to_head, warmup_cosine
from tlcourse.models import SmallResNet


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probe_to_head_reproduces_the_probe(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(60, 5))
    y = np.arange(60) % n_classes
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    head = probe_to_head(probe, nn.Linear(5, n_classes))
    with torch.no_grad():
        logits = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert (logits.argmax(1) == probe.predict(x)).all()
    proba = torch.softmax(torch.as_tensor(logits), 1).numpy()
    assert np.allclose(proba, probe.predict_proba(x), atol=1e-4)


def test_probe_to_head_checks_shapes():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression()).fit(np.random.rand(9, 4), np.arange(9) % 3)
    with pytest.raises(ValueError, match="head expects"):
        probe_to_head(probe, nn.Linear(4, 5))
    with pytest.raises(TypeError, match="probe"):
        probe_to_head(object(), nn.Linear(4, 3))


def test_warmup_cosine_shape():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total=10, warmup=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)  # warm-up, then the peak
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # cosine decay
    assert lrs[-1] < 0.05


def test_finetune_stops_early_and_records_history():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 28, 28, generator=g)
    y = torch.arange(24) % 2
    x[y == 1, :, :14] += 0.5
    data = ArrayDataset(x.clamp(0, 1), y)
    hist = finetune(SmallResNet(2, widths=(4, 8, 8)), data, data, lr=3e-3, epochs=3, batch_size=8, patience=1)
    assert 1 <= len(hist["epoch"]) <= 3
    assert len(hist["val_loss"]) == len(hist["epoch"])


def test_pattern_folder_layout(tmp_path):
    rng = np.random.default_rng(0)
    for label in PATTERN_CLASSES:
        img = pattern_image(label, 20, rng)
        assert img.shape == (20, 20, 3) and img.dtype == np.uint8
    root = write_pattern_folder(tmp_path / "fabrics", n_per_class=2, seed=0, sizes=(16, 24))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert len(files) == 2 * len(PATTERN_CLASSES) and files[0].startswith("checks/")
    from torchvision.datasets import ImageFolder

    assert ImageFolder(str(root)).classes == list(PATTERN_CLASSES)
    with pytest.raises(ValueError, match="label"):
        pattern_image("plaid", 20, rng)
