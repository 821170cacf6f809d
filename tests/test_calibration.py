"""Tests of tlcourse.calibration (ECE, reliability diagrams, temperature scaling, bootstrap CI)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from tlcourse.calibration import (
    ReliabilityDiagram,
    TemperatureScaler,
    bootstrap_ci,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_diagram,
)


def _two_class(confidences: list[float], correct: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary predictions for class 0 with the given confidences; label 0 if correct else 1."""
    c = torch.tensor(confidences, dtype=torch.float64)
    probs = torch.stack([c, 1 - c], dim=1)
    labels = torch.tensor([0 if ok else 1 for ok in correct])
    return probs, labels


def test_ece_is_zero_for_a_perfectly_calibrated_case() -> None:
    # 10 predictions at 0.8 of which 8 right, 10 at 0.6 of which 6 right, 4 at 1.0 all right
    confidences = [0.8] * 10 + [0.6] * 10 + [1.0] * 4
    correct = [True] * 8 + [False] * 2 + [True] * 6 + [False] * 4 + [True] * 4
    probs, labels = _two_class(confidences, correct)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_matches_a_hand_count() -> None:
    # n_bins = 5, bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]
    # 0.55, 0.58 -> bin 3: conf mean 0.565, acc 1/2 -> |0.5 - 0.565| * 2/6 = 0.021666...
    # 0.7        -> bin 4: conf 0.7, acc 0          -> 0.7 * 1/6 = 0.116666...
    # 0.9, 0.95, 1.0 -> bin 5: conf mean 0.95, acc 1 -> 0.05 * 3/6 = 0.025
    probs, labels = _two_class([0.55, 0.58, 0.7, 0.9, 0.95, 1.0], [True, False, False, True, True, True])
    expected = 0.065 * 2 / 6 + 0.7 / 6 + 0.05 * 3 / 6
    diagram = reliability_diagram(probs, labels, n_bins=5)
    assert diagram.ece == pytest.approx(expected, abs=1e-12)
    assert diagram.counts.tolist() == [0, 0, 2, 1, 3]
    assert np.isnan(diagram.accuracy[0]) and diagram.accuracy[2] == pytest.approx(0.5)
    assert diagram.confidence[4] == pytest.approx(0.95)


def test_ece_matches_a_loop_reference_on_random_data() -> None:
    g = torch.Generator().manual_seed(0)
    probs = F.softmax(torch.randn(500, 10, generator=g) * 2, dim=1)
    labels = torch.randint(0, 10, (500,), generator=g)
    conf, pred = probs.max(1)
    ref = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            gap = abs((pred[in_bin] == labels[in_bin]).float().mean() - conf[in_bin].mean())
            ref += float(in_bin.float().mean() * gap)
    assert expected_calibration_error(probs, labels) == pytest.approx(ref, abs=1e-6)


def _overconfident(n: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z) (so z is calibrated), logits returned as scale * z."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 5, generator=g) * 1.5
    labels = torch.multinomial(F.softmax(z, dim=1), 1, generator=g).squeeze(1)
    return z * scale, labels


def test_temperature_scaling_fixes_an_overconfident_model() -> None:
    val_logits, val_labels = _overconfident(4000, scale=3.0, seed=0)
    test_logits, test_labels = _overconfident(4000, scale=3.0, seed=1)
    scaler = TemperatureScaler().fit(val_logits, val_labels)
    assert scaler.temperature == pytest.approx(3.0, rel=0.1)  # recovers the true over-confidence
    with torch.no_grad():
        scaled = scaler(test_logits)
    assert negative_log_likelihood(scaled, test_labels) < negative_log_likelihood(test_logits, test_labels) - 0.2
    before = expected_calibration_error(test_logits.softmax(1), test_labels)
    after = expected_calibration_error(scaled.softmax(1), test_labels)
    assert after < before / 3
    assert torch.equal(scaled.argmax(1), test_logits.argmax(1))  # accuracy is untouched
    assert fit_temperature(val_logits, val_labels) == pytest.approx(scaler.temperature, rel=1e-5)


def test_temperature_below_one_for_an_underconfident_model() -> None:
    logits, labels = _overconfident(3000, scale=0.5, seed=2)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.15)


def test_bootstrap_ci_for_accuracy() -> None:
    rng = np.random.default_rng(0)
    correct = (rng.random(1000) < 0.9).astype(float)
    est, low, high = bootstrap_ci(correct, n_resamples=4000, seed=0)
    assert est == pytest.approx(correct.mean())
    assert low < est < high
    # close to the normal approximation and to scipy's percentile bootstrap
    half = 1.96 * np.sqrt(est * (1 - est) / len(correct))
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)
    ref = stats.bootstrap((correct,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.005)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.005)
    from_tensor = bootstrap_ci(torch.tensor(correct), n_resamples=500, seed=3)
    assert from_tensor == bootstrap_ci(correct, n_resamples=500, seed=3)  # same seed, same interval


def test_reliability_plot_returns_axes() -> None:
    probs, labels = _two_class([0.55, 0.9, 0.95], [True, False, True])
    diagram = reliability_diagram(probs, labels, n_bins=4)
    assert isinstance(diagram, ReliabilityDiagram) and diagram.counts.sum() == 3
    ax = plot_reliability_diagram(diagram, label="model")
    assert ax.get_xlabel().startswith("confidence")
    ax = plot_reliability_diagram(diagram, label="after", kind="line", ax=ax)
    assert any(t.get_text().startswith("after: ECE") for t in ax.get_legend().get_texts())
    with pytest.raises(ValueError, match="kind"):
        plot_reliability_diagram(diagram, kind="pie")
    with pytest.raises(TypeError, match="diagram"):
        plot_reliability_diagram(probs)


def test_bad_inputs() -> None:
    probs, labels = _two_class([0.6, 0.7], [True, False])
    with pytest.raises(ValueError, match="logits"):
        expected_calibration_error(torch.randn(2, 2) * 5, labels)
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error(probs, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(probs, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="probs must have 2"):
        expected_calibration_error(probs[:, 0], labels)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(probs, labels, n_bins=0)
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="empty"):
        expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaler(temperature=0.0)
    with pytest.raises(TypeError, match="labels"):
        fit_temperature(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="same length"):
        fit_temperature(torch.randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="values"):
        bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 0.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 0.0], n_resamples=0)
