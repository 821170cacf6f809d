"""The strategies on the protocol: tuning finds the best rate, every recipe gets the same steps,
scratch is tuned like the others, cached frozen stages are exact, layer copies copy what they say."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from tlcourse.data import ArrayDataset
from tlcourse.models import SmallResNet
from tlcourse.strategies import (
    RECIPES,
    STRATEGIES,
    Budget,
    FeatureCache,
    Phase,
    Recipe,
    _split_steps,
    copy_stages,
    recipe_table,
    train_strategy,
    tune_strategy,
)


def colours(n_per_class: int, seed: int) -> ArrayDataset:
    """Three classes told apart by which colour channel is bright: easy to learn, known answer."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    x = 0.2 * torch.rand(len(labels), 3, 28, 28, generator=g)
    x[torch.arange(len(labels)), labels] += 0.7
    return ArrayDataset(x, labels, ["r", "g", "b"])


TRAIN, VAL = colours(6, 0), colours(4, 1)


def tiny(num_classes: int) -> SmallResNet:
    torch.manual_seed(0)
    return SmallResNet(num_classes, widths=(4, 8, 8))


KW = {"make_model": tiny, "cache_key": "tiny", "budget": Budget(steps=12, batch_size=6, eval_every=4, patience=99)}


def test_tuning_picks_the_known_best_rate():
    def wider(num_classes: int) -> SmallResNet:
        torch.manual_seed(0)
        return SmallResNet(num_classes, widths=(8, 8, 8))

    recipe = Recipe("full_test", (Phase(0),), (10.0, 1e-2, 3.0))  # two rates that diverge
    budget = Budget(steps=30, batch_size=6, eval_every=10, patience=99)
    result = tune_strategy(recipe, TRAIN, VAL, seed=0, make_model=wider, cache_key="w", budget=budget)
    assert result.best_params == {"lr": 1e-2}
    assert [p["lr"] for p, _ in result.scores] == [10.0, 1e-2, 3.0]
    assert result.best_score == max(s for _, s in result.scores) > 0.9


@pytest.mark.parametrize("steps", [7, 12, 50, 61])
def test_every_recipe_splits_exactly_the_budget(steps):
    for recipe in RECIPES.values():
        split = _split_steps(recipe.phases, steps)
        assert sum(split) == steps, (recipe.name, split)
        if recipe.name == "gradual":
            assert max(split) - min(split) <= 1


def test_equal_optimizer_steps_for_every_strategy_gradual_included():
    counter = {"n": 0}

    def count(*_):
        counter["n"] += 1

    handle = register_optimizer_step_post_hook(count)
    try:
        for name in STRATEGIES:
            counter["n"] = 0
            trained = train_strategy(name, TRAIN, VAL, lr=1e-3, seed=0, **KW)
            assert counter["n"] == KW["budget"].steps == trained.steps_run, name
    finally:
        handle.remove()


def test_scratch_is_tuned_like_the_others():
    sizes = {len(r.grid) for r in RECIPES.values()}
    assert sizes == {3}, "every strategy searches a grid of the same size"
    assert not RECIPES["scratch"].pretrained
    result = tune_strategy("scratch", TRAIN, VAL, seed=0, budget=Budget(steps=8, batch_size=6, eval_every=4))
    assert len(result.scores) == 3 and result.best_params["lr"] in RECIPES["scratch"].grid
    assert 0 < result.best.best_step <= result.best.steps_run <= 8
    table = recipe_table(Budget(steps=8))
    assert list(table.index) == list(STRATEGIES) and (table["optimizer steps"] == 8).all()


def test_early_stopping_keeps_the_best_validation_checkpoint():
    budget = Budget(steps=20, batch_size=6, eval_every=2, patience=2)
    trained = train_strategy("full", TRAIN, VAL, lr=3.0, seed=0, make_model=tiny, cache_key="t2", budget=budget)
    assert trained.best_step % 2 == 0 and 0 < trained.best_step <= trained.steps_run <= 20
    if trained.steps_run < 20:  # stopped: exactly `patience` evaluations without improvement
        assert trained.steps_run - trained.best_step == 2 * 2
    accuracy = (trained.predict(VAL) == VAL.labels).float().mean().item()
    assert accuracy == pytest.approx(trained.val_accuracy)  # the restored weights are the best ones


def test_cached_frozen_stages_are_exact():
    cache = FeatureCache()
    trained = train_strategy("partial", TRAIN, VAL, lr=1e-2, seed=0, **{**KW, "cache": cache})
    assert trained.frozen_below == 3
    with torch.no_grad():
        direct = trained.model.eval()(VAL.images).argmax(1)
    assert torch.equal(trained.predict(VAL), direct)
    assert any(k[0] == "tiny" for k in cache.store)


def test_copy_stages_copies_exactly_n_stages():
    source, target = tiny(3), SmallResNet(3, widths=(4, 8, 8))
    copy_stages(target, source, 2)
    for name, same in (("stem", True), ("layer1", True), ("layer2", False), ("layer3", False)):
        a, b = getattr(source.backbone, name).state_dict(), getattr(target.backbone, name).state_dict()
        equal = all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
        assert equal == same, name
