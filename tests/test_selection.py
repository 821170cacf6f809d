"""Label-free model selection (tlcourse.adapt.selection) and CDAN+E on shifts where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlcourse.adapt import LeNet, train_adaptation
from tlcourse.adapt.cdan import CDANLoss, entropy_weights, multilinear_map
from tlcourse.adapt.selection import (
    density_ratio,
    dev_risk,
    iwcv_risk,
    labelled_target_validation,
    prediction_entropy,
    score_candidate,
    select,
    snd_score,
)


def _shift(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source N(0, 1), target N(1, 1) in 1-D: the true ratio is exp(x − ½)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 1)), rng.normal(1, 1, (n, 1)), rng.normal(0, 1, (n, 1))


def test_density_ratio_matches_the_true_ratio():
    xs, xt, xe = _shift()
    w = density_ratio(xs, xt, xe)
    central = np.abs(xe[:, 0]) < 1.5
    np.testing.assert_allclose(np.log(w[central]), xe[central, 0] - 0.5, atol=0.15)


def test_iwcv_and_dev_estimate_the_target_risk():
    xs, xt, xe = _shift()
    losses = xe[:, 0] ** 2  # E_s[x²] = 1, E_t[x²] = 2
    w = density_ratio(xs, xt, xe)
    assert abs(iwcv_risk(losses, w) - 2.0) < 0.25
    assert abs(dev_risk(losses, w) - 2.0) < 0.25
    assert abs(np.mean(losses) - 1.0) < 0.1  # the unweighted source risk is the wrong number
    # no shift: weights 1 → both are the plain mean
    assert iwcv_risk(losses, np.ones_like(losses)) == pytest.approx(losses.mean())
    assert dev_risk(losses, np.ones_like(losses)) == pytest.approx(losses.mean())


def test_dev_control_variate_reduces_variance():
    rng = np.random.default_rng(1)
    iw, dev = [], []
    for _ in range(200):
        x = rng.normal(0, 1, 300)
        w = np.exp(x - 0.5)  # true ratio for target N(1, 1)
        losses = 1.0 + 0.5 * x
        iw.append(iwcv_risk(losses, w))
        dev.append(dev_risk(losses, w))
    # true target risk: 1 + 0.5 * 1 = 1.5
    assert abs(np.mean(dev) - 1.5) < 0.05
    assert np.var(dev) < 0.5 * np.var(iw)


def test_iwcv_picks_the_model_that_is_better_on_the_target():
    xs, xt, xe = _shift()
    w = density_ratio(xs, xt, xe)
    loss_a = (xe[:, 0] > 0.5).astype(float)  # good on the source region, bad where the target lives
    loss_b = np.full(len(xe), 0.35)          # mediocre everywhere
    scores = {name: {"source_val": 1 - ell.mean(), "iwcv": iwcv_risk(ell, w), "dev": dev_risk(ell, w)}
              for name, ell in [("a", loss_a), ("b", loss_b)]}
    assert select(scores, "source_val") == "a"  # source accuracy is fooled
    assert select(scores, "iwcv") == "b" and select(scores, "dev") == "b"


def test_snd_and_entropy_prefer_clustered_confident_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    confident = np.full((500, 10), 0.01)
    confident[np.arange(500), labels] = 0.91
    diffuse = rng.dirichlet(np.ones(10), 500)
    torn = np.full((500, 10), 0.1 / 8)  # each prediction torn between its class and a random other one
    other = (labels + rng.integers(1, 10, 500)) % 10
    torn[np.arange(500), labels] = torn[np.arange(500), other] = 0.45
    assert snd_score(confident) > snd_score(torn)
    assert prediction_entropy(confident) < prediction_entropy(diffuse)
    assert prediction_entropy(np.full((4, 10), 0.1)) == pytest.approx(np.log(10))


def test_labelled_target_validation_is_small_stratified_and_disjoint():
    y = np.repeat(np.arange(10), 40)
    rest, val = labelled_target_validation(y, per_class=10, seed=0)
    assert len(val) == 100 and np.bincount(y[val]).tolist() == [10] * 10
    assert len(np.intersect1d(rest, val)) == 0 and len(rest) + len(val) == len(y)


def test_select_ties_nan_and_direction():
    scores = {"a": {"iwcv": 1.0, "snd": float("nan")}, "b": {"iwcv": 1.0, "snd": 2.0}}
    assert select(scores, "iwcv") == "a"  # lower risk wins, ties to the first
    assert select(scores, "snd") == "b"   # NaN loses


def test_score_candidate_on_a_tiny_model():
    torch.manual_seed(0)
    model = LeNet(feature_dim=8).eval()
    x, y = torch.rand(20, 3, 28, 28), torch.arange(20) % 10
    s = score_candidate(model, model, x[:10], (x[10:], y[10:]), torch.rand(12, 3, 28, 28), (x[:10], y[:10]))
    assert set(s) == {"source_val", "iwcv", "dev", "snd", "entropy", "target_val"}
    assert all(np.isfinite(v) for v in s.values())


def test_cdan_loss_pieces_and_training():
    f, p = torch.randn(4, 3), torch.softmax(torch.randn(4, 5), 1)
    h = multilinear_map(f, p)
    assert h.shape == (4, 15) and torch.allclose(h[1].view(3, 5), torch.outer(f[1], p[1]))
    w = entropy_weights(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert w[0] > w[1] and w.mean() == pytest.approx(1.0)
    torch.manual_seed(0)
    model = LeNet(feature_dim=8)
    loss = CDANLoss(8, 10)
    xs, ys, xt = torch.rand(16, 3, 28, 28), torch.arange(16) % 10, torch.rand(16, 3, 28, 28)
    hist = train_adaptation(model, (xs, ys), xt, loss, epochs=2, batch_size=8, seed=0)
    assert loss.step == 4 and 0 < loss.lambda_ < 1
    assert np.isfinite(hist.records[-1]["transfer_loss"])


class _Digits(torch.utils.data.Dataset):
    """A plain map-style labelled dataset (not an ArrayDataset, no .labels)."""

    def __init__(self, n: int) -> None:
        self.x, self.y = torch.rand(n, 3, 28, 28), torch.arange(n) % 10

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class _TimmStyle(torch.nn.Module):
    """Features and logits as methods, as timm models expose them."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 8), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 10)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_cdan_and_selection_take_any_dataset_and_feature_protocol():
    torch.manual_seed(0)
    model, data = _TimmStyle(), _Digits(16)
    train_adaptation(model, data, torch.rand(16, 3, 28, 28), CDANLoss(8, 10), epochs=1, batch_size=8, seed=0)
    s = score_candidate(model, model, data.x[:8], (data.x[8:], data.y[8:]), torch.rand(10, 3, 28, 28))
    assert np.isnan(s["target_val"]) and np.isfinite(s["dev"])
