"""tlcourse.protocol on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlcourse.data import ArrayDataset
from tlcourse.protocol import (
    Claim,
    SealedTestError,
    Study,
    TuneResult,
    mean_ci,
    paired_bootstrap,
    tune,
    validation_split,
)


def _pool(counts=(10, 20, 30)) -> ArrayDataset:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return ArrayDataset(torch.rand(len(labels), 1, 4, 4), labels)


# ---------------------------------------------------------------- validation_split


def test_validation_split_is_stratified_disjoint_and_seeded():
    pool = _pool()
    pool.images[:, 0, 0, 0] = torch.arange(len(pool), dtype=torch.float)  # an id per row
    train, val = validation_split(pool, val_fraction=0.2, seed=3)
    assert torch.bincount(val.labels).tolist() == [2, 4, 6]
    assert torch.bincount(train.labels).tolist() == [8, 16, 24]
    ids_t, ids_v = set(train.images[:, 0, 0, 0].tolist()), set(val.images[:, 0, 0, 0].tolist())
    assert not ids_t & ids_v and len(ids_t | ids_v) == len(pool)
    again, _ = validation_split(pool, val_fraction=0.2, seed=3)
    other, _ = validation_split(pool, val_fraction=0.2, seed=4)
    assert torch.equal(again.images, train.images) and not torch.equal(other.images, train.images)


def test_validation_split_per_class_and_plain_datasets():
    _, val = validation_split(_pool(), per_class=3)
    assert torch.bincount(val.labels).tolist() == [3, 3, 3]
    plain = torch.utils.data.TensorDataset(torch.rand(12, 2))
    train, val = validation_split(plain, 0.25, labels=[0, 1] * 6)
    assert isinstance(val, torch.utils.data.Subset) and len(val) == 4 and len(train) == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"val_fraction": 0}, "val_fraction"),
    ({"per_class": 10}, "class 0 has 10"),
    ({"per_class": 0}, "per_class"),
    ({"seed": -1}, "seed"),
])
def test_validation_split_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        validation_split(_pool(), **kwargs)


def test_validation_split_needs_labels_and_two_per_class():
    with pytest.raises(TypeError, match="labels"):
        validation_split(torch.utils.data.TensorDataset(torch.rand(4, 1)))
    with pytest.raises(ValueError, match="class 2 has 1"):
        validation_split(_pool((5, 5, 1)))


# ---------------------------------------------------------------- tune


def test_tune_finds_the_known_best_rate():
    # "training" = gradient descent on a quadratic with a fixed step budget: too small a rate
    # does not get there, too large a rate diverges; 0.5 is the known best of the grid.
    def train_fn(params, seed):
        w = 5.0 + seed
        for _ in range(5):
            w -= params["lr"] * 2 * w
        return w

    res = tune(train_fn, lambda w: -abs(w), {"lr": [0.01, 0.1, 0.5, 1.2]}, seed=1)
    assert isinstance(res, TuneResult)
    assert res.best_params == {"lr": 0.5} and res.best == 0.0 and res.best_score == 0.0
    assert [p["lr"] for p, _ in res.scores] == [0.01, 0.1, 0.5, 1.2]
    assert len(res.frame()) == 4


def test_tune_minimise_ties_nan_and_product_grid():
    res = tune(lambda p, s: p, lambda p: p["a"] * p["b"], {"a": [1, 2], "b": [3, 1]}, maximize=False)
    assert res.best_params == {"a": 1, "b": 1} and res.best_score == 1 and len(res.scores) == 4
    tie = tune(lambda p, s: p, lambda p: 1.0, {"lr": [3, 2, 1]})
    assert tie.best_params == {"lr": 3}
    nan = tune(lambda p, s: p, lambda p: float("nan") if p["lr"] == 1 else p["lr"], {"lr": [1, 2]})
    assert nan.best_params == {"lr": 2}
    with pytest.raises(ValueError, match="NaN"):
        tune(lambda p, s: p, lambda p: float("nan"), {"lr": [1]})


@pytest.mark.parametrize("grid", [{}, {"lr": []}, {"lr": "0.1"}, [("lr", [1])]])
def test_tune_bad_grid(grid):
    with pytest.raises(ValueError, match="grid"):
        tune(lambda p, s: p, lambda p: 0.0, grid)


# ---------------------------------------------------------------- intervals


def _study_values(rng, s, n, delta, sd_seed, sd_item):
    """Bernoulli correctness of two methods; method a is better by ``delta`` on average."""
    p = rng.uniform(0.2, 0.8, n)
    item = rng.normal(0, sd_item, n)  # examples where a has an edge (or not)
    a = rng.random((s, n)) < np.clip(p + delta + item + rng.normal(0, sd_seed, (s, 1)), 0, 1)
    b = rng.random((s, n)) < np.clip(p + rng.normal(0, sd_seed, (s, 1)), 0, 1)
    return a.astype(float), b.astype(float)


@pytest.mark.parametrize("seeds, sd_seed, sd_item", [(3, 0.04, 0.05), (5, 0.02, 0.15)])
def test_paired_ci_covers_the_true_difference_at_its_nominal_rate(seeds, sd_seed, sd_item):
    rng = np.random.default_rng(seeds)
    delta, studies, cover, widths = 0.05, 300, 0, []
    for r in range(studies):
        a, b = _study_values(rng, seeds, 200, delta, sd_seed, sd_item)
        d = paired_bootstrap(a, b, n_boot=400, seed=r)
        cover += d.ci_low <= delta <= d.ci_high
        widths.append(d.ci_high - d.ci_low)
    # 300 studies: a binomial SE of 1.3 points around 95%
    assert 0.90 <= cover / studies <= 0.99, cover / studies
    assert np.median(widths) < 0.4  # informative, not trivially wide


def test_pairing_cancels_what_methods_share():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1, (3, 400)) + rng.normal(0, 2, (3, 1))  # hard items, lucky seeds
    a, b = shared + 0.1, shared.copy()
    d = paired_bootstrap(a, b)
    assert d.mean == pytest.approx(0.1) and d.ci_high - d.ci_low < 1e-9
    unpaired_width = mean_ci(a).ci_high - mean_ci(a).ci_low
    assert unpaired_width > 1.0


def test_mean_ci_over_seeds_is_students_t():
    ci = mean_ci([0.5, 0.6, 0.7])
    assert ci.mean == pytest.approx(0.6)
    assert ci.half_width == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert ci.format() == "60.0 ± 24.8"


def test_share_of_gain_known_value():
    rng = np.random.default_rng(1)
    b = (rng.random((3, 2000)) < 0.9).astype(float)
    a = np.where(rng.random((3, 2000)) < 0.75, b, 0.5)  # keeps ~ (0.5 + .75·.4)/... of the gain
    ref = 0.5
    d = paired_bootstrap(a, b, statistic="share_of_gain", reference=ref)
    truth = (a.mean() - ref) / (b.mean() - ref)
    assert d.ci_low < truth < d.ci_high and 0.6 < d.mean < 0.9


@pytest.mark.parametrize("call, exc, match", [
    (lambda: paired_bootstrap(np.ones((3, 4)), np.ones((3, 5))), ValueError, "paired"),
    (lambda: paired_bootstrap([[np.nan]], [[1.0]]), ValueError, "NaN"),
    (lambda: paired_bootstrap(np.ones((2, 2)), np.ones((2, 2)), n_boot=5), ValueError, "n_boot"),
    (lambda: paired_bootstrap(np.ones((2, 2)), np.ones((2, 2)), confidence=95), ValueError, "confidence"),
    (lambda: paired_bootstrap(np.ones((2, 2)), None), ValueError, "needs b"),
    (lambda: paired_bootstrap(np.ones(2), np.ones(2), statistic="median"), ValueError, "statistic"),
    (lambda: paired_bootstrap(np.zeros((2, 2)), np.zeros((2, 2)), statistic="share_of_gain", reference=0.5),
     ValueError, "no gain"),
    (lambda: mean_ci([]), ValueError, "non-empty"),
    (lambda: mean_ci("abc"), TypeError, "numbers"),
])
def test_interval_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- Study


class _Data(torch.utils.data.Dataset):
    def __init__(self, labels):
        self.labels = torch.as_tensor(labels)
        self.opened = 0

    def __len__(self):
        return len(self.labels)


def _predictor(acc: float, seed: int):
    def predict(test):
        test.opened += 1
        rng = np.random.default_rng(seed)
        y = test.labels.numpy()
        return np.where(rng.random(len(y)) < acc, y, (y + 1) % 3)
    return predict


def _study(claims=()):
    test = _Data(np.arange(600) % 3)
    return Study("toy", test=test, seeds=[0, 1, 2], n_boot=500).declare(*claims), test


def test_test_set_is_sealed_until_declared_and_opened_once():
    test = _Data([0, 1, 2, 0])
    study = Study("toy", test=test, seeds=[0, 1, 2])
    with pytest.raises(SealedTestError, match="declare"):
        study.evaluate("a", 0, _predictor(0.5, 0))
    with pytest.raises(SealedTestError, match="sealed"):
        _ = study.test
    assert test.opened == 0
    study.declare()
    study.evaluate("a", 0, _predictor(0.5, 0))
    with pytest.raises(SealedTestError, match="already opened"):
        study.evaluate("a", 0, _predictor(0.5, 0))
    with pytest.raises(SealedTestError, match="already opened"):
        study.record("a", 0, [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(SealedTestError, match="before the test set"):
        study.declare(Claim("late", a="a", at_least=0.0))
    assert test.opened == 1


def test_claims_pass_and_fail_on_the_ci_bound_with_numbers():
    claims = [
        Claim("good beats bad", a="good", b="bad", at_least=0.10),
        Claim("bad beats good", a="bad", b="good", at_least=0.0),
        Claim("gap is small", a="good", b="bad", at_most=0.05),
        Claim("good is accurate", a="good", at_least=0.85),
        Claim("good keeps its gain over bad", a="good", b="good", statistic="share_of_gain", reference="bad",
              at_least=0.99),
    ]
    study, test = _study(claims)
    for seed in study.seeds:
        study.evaluate("good", seed, _predictor(0.9, seed))
        study.evaluate("bad", seed, _predictor(0.6, 100 + seed))
    assert test.opened == 6
    results = study.check_claims()
    assert [r.passed for r in results] == [True, False, False, True, True]
    d = study.compare("good", "bad")
    assert 0.25 < d.mean < 0.35 and d.ci_low > 0.2
    with pytest.raises(AssertionError) as info:
        study.assert_claims()
    msg = str(info.value)
    assert "bad beats good" in msg and "gap is small" in msg and "good beats bad" not in msg
    assert f"{-d.mean:.4f}" in msg and "CI low" in msg and "CI high" in msg


def test_summary_table_pick_and_predictions_formats():
    study, _ = _study()
    for seed in study.seeds:
        study.evaluate("a", seed, _predictor(0.8, seed))
        logits = np.eye(3)[np.arange(600) % 3]  # perfect class scores
        study.evaluate("b", seed, lambda t, scores=logits: torch.tensor(scores))
        study.pick("best", seed, "b")
    s = study.summary().set_index("method")
    assert s.loc["b", "mean"] == 1.0 and s.loc["b", "std"] == 0.0 and s.loc["best", "n_seeds"] == 3
    assert s.loc["a", "ci_low"] < s.loc["a", "mean"] < s.loc["a", "ci_high"]
    table = study.table(glue_prefix="t", baseline="a")
    assert table.loc["b", "toy (mean ± 95% CI)"] == "100.0 ± 0.0"
    assert table.loc["b", "vs a"].startswith("+") and table.loc["a", "vs a"] == "—"
    assert study.methods == ["a", "b", "best"] and study.matrix("best").shape == (3, 600)


def test_study_bad_input():
    study, _ = _study()
    with pytest.raises(ValueError, match="one of the study's seeds"):
        study.evaluate("a", 7, _predictor(0.5, 0))
    with pytest.raises(ValueError, match="one prediction or value per test example"):
        study.record("a", 0, [1, 0])
    with pytest.raises(ValueError, match="outside"):
        study.record("a", 1, np.full(600, 2.0))
    with pytest.raises(ValueError, match="unknown method"):
        study.compare("a", "zzz")
    study.record("x", 0, np.ones(600, dtype=int))
    study.record("y", 1, np.ones(600, dtype=int))
    with pytest.raises(ValueError, match="different seeds"):
        study.compare("x", "y")
    with pytest.raises(ValueError, match="seeds"):
        Study("s", test=_Data([0]), seeds=[0, 0])
    with pytest.raises(ValueError, match="empty"):
        Study("s", test=_Data([]), seeds=[0])
    with pytest.raises(ValueError, match="at_least"):
        Claim("no bound", a="x", b="y")
    with pytest.raises(ValueError, match="reference"):
        Claim("share", a="x", b="y", statistic="share_of_gain", at_least=0.9)


def test_share_of_gain_is_unbounded_when_the_gain_itself_is_uncertain():
    """A ratio whose denominator's CI reaches zero has no finite CI (Fieller); never a zero-width one."""
    rng = np.random.default_rng(3)
    b = (rng.random((3, 96)) < np.array([[0.45], [0.62], [0.60]])).astype(float)  # gain over 0.5: unsure
    a = (rng.random((3, 96)) < np.array([[0.55], [0.60], [0.58]])).astype(float)
    d = paired_bootstrap(a, b, statistic="share_of_gain", reference=0.5)
    assert d.ci_low == -np.inf and d.ci_high == np.inf


def test_share_of_gain_interval_has_width_and_covers_the_truth():
    """Where the gain is clear, the ratio's interval is finite, of positive width, and covers the truth."""
    rng = np.random.default_rng(4)
    hits, trials = 0, 60
    for _ in range(trials):
        b = (rng.random((3, 200)) < 0.80).astype(float)
        a = (rng.random((3, 200)) < 0.77).astype(float)   # true share (0.77 − 0.5) / (0.80 − 0.5) = 0.9
        d = paired_bootstrap(a, b, statistic="share_of_gain", reference=0.5, n_boot=400, seed=int(rng.integers(1e6)))
        assert np.isfinite(d.ci_low) and d.ci_high - d.ci_low > 0.02
        hits += d.ci_low <= 0.9 <= d.ci_high
    assert hits / trials >= 0.85


def test_a_method_run_on_fewer_seeds_pairs_on_the_common_ones():
    study, _ = _study()
    for seed in study.seeds:
        study.evaluate("cheap", seed, _predictor(0.6, 100 + seed))
    for seed in (0, 2):
        study.evaluate("costly", seed, _predictor(0.9, seed))
    assert study.common_seeds("costly", "cheap") == [0, 2]
    with pytest.raises(ValueError, match="different seeds"):
        study.compare("costly", "cheap")  # never paired silently on a subset
    d = study.compare("costly", "cheap", seeds=[0, 2])
    rows = study.matrix("costly") - study.matrix("cheap", [0, 2])
    assert d.n_seeds == 2 and d.mean == pytest.approx(rows.mean())
    share = study.share_of_gain("costly", "cheap", 1 / 3, seeds=[0, 2])
    gain_a, gain_b = study.matrix("costly").mean() - 1 / 3, study.matrix("cheap", [0, 2]).mean() - 1 / 3
    assert share.mean == pytest.approx(gain_a / gain_b)
    assert study.table(baseline="cheap").loc["costly", "seeds"] == 2  # the table pairs on the common seeds
    with pytest.raises(ValueError, match="no test values for seeds"):
        study.compare("costly", "cheap", seeds=[0, 1])
    with pytest.raises(ValueError, match="distinct seeds of the study"):
        study.compare("costly", "cheap", seeds=[0, 7])
