"""Transfer strategies as declared recipes, trained on the protocol (:mod:`tlcourse.protocol`).

A *strategy* turns a backbone and a small labelled target set into a classifier. Each one is a
:class:`Recipe`: a sequence of :class:`Phase` s (which lower stages stay frozen, how fast the
rest learns) and a learning-rate grid declared up front. Every strategy, scratch included,
gets the **same**:

* budget of optimizer steps (``steps``, split between the phases of multi-phase recipes);
* tuning: its learning rate chosen on a validation split of the labelled pool
  (:func:`tune_strategy`, built on :func:`tlcourse.protocol.tune`);
* early stopping: the validation accuracy is measured every ``eval_every`` steps and the best
  checkpoint is kept; a phase ends after ``patience`` evaluations without improvement.

Frozen lower stages are run once (in eval mode, so batch norm does not drift) and their outputs
cached: a linear probe trains on cached features, partial fine-tuning on cached ``layer2`` maps.
This is exact, not an approximation, and makes the cheap strategies cheap.

====================  =======================================================================
``scratch``           random initialisation, every weight trained
``linear_probe``      frozen backbone, new linear head (feature extraction)
``partial``           stem..layer2 frozen, layer3 + head trained
``full``              every weight, one learning rate
``discriminative``    every weight, rate ``lr·γ^d`` for a stage ``d`` below the head, Eq. (2.9)
``gradual``           head, then one more stage per phase, discriminative rates (Howard & Ruder 2018)
``lp_ft``             linear probe for half the steps, then full fine-tuning (Kumar et al. 2022)
====================  =======================================================================
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from tlcourse.checks import check_choice, check_int
from tlcourse.finetune import discriminative_param_groups, freeze, unfreeze
from tlcourse.models.pretrained import load_pretrained
from tlcourse.models.resnet import BLOCK_NAMES, SmallResNet
from tlcourse.protocol import TuneResult, tune
from tlcourse.strategies_legacy import compare, probe_accuracy, run_strategy, summarise  # noqa: F401 (first version)
from tlcourse.train import evaluate, fit

__all__ = ["Phase", "Recipe", "RECIPES", "STRATEGIES", "Budget", "Trained", "train_strategy", "tune_strategy",
           "recipe_table", "FeatureCache", "copy_stages"]


@dataclass(frozen=True)
class Phase:
    """One phase of a recipe: the lowest ``frozen`` backbone stages stay fixed (0-4; 4 = the
    whole backbone), the rest trains for ``share`` of the step budget at ``lr_scale``·lr, with
    discriminative rates ``decay`` per stage (``None``: one rate)."""

    frozen: int
    share: float = 1.0
    lr_scale: float = 1.0
    decay: float | None = None


@dataclass(frozen=True)
class Recipe:
    """A strategy declared up front: its phases, learning-rate grid and whether it starts pretrained."""

    name: str
    phases: tuple[Phase, ...]
    grid: tuple[float, ...]
    pretrained: bool = True
    idea: str = ""

    @property
    def frozen_below(self) -> int:
        """Stages frozen in every phase: they never train, so their outputs can be cached."""
        return min(p.frozen for p in self.phases)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("scratch", (Phase(0),), (1e-3, 3e-3, 1e-2), pretrained=False,
           idea="same network from random weights: the baseline transfer must beat"),
    Recipe("linear_probe", (Phase(4),), (3e-3, 1e-2, 3e-2), idea="feature extraction: features reused as they are"),
    Recipe("partial", (Phase(3),), (1e-3, 3e-3, 1e-2), idea="low-level features general, top stage adapted"),
    Recipe("full", (Phase(0),), (3e-4, 1e-3, 3e-3), idea="adapt every feature to the target"),
    Recipe("discriminative", (Phase(0, decay=0.3),), (1e-3, 3e-3, 1e-2),
           idea="every weight, lower stages slower (Howard & Ruder 2018)"),
    Recipe("gradual", tuple(Phase(f, 0.2, decay=0.3) for f in (4, 3, 2, 1, 0)), (1e-3, 3e-3, 1e-2),
           idea="unfreeze one stage per phase, top first (Howard & Ruder 2018)"),
    Recipe("lp_ft", (Phase(4, 0.5, lr_scale=10.0), Phase(0, 0.5)), (3e-4, 1e-3, 3e-3),
           idea="probe first so a random head does not distort the features (Kumar et al. 2022)"),
)}
STRATEGIES: tuple[str, ...] = tuple(RECIPES)


@dataclass(frozen=True)
class Budget:
    """What every strategy gets alike: optimizer steps, batch size, evaluation and patience."""

    steps: int = 60
    batch_size: int = 16
    eval_every: int = 10
    patience: int = 3

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "patience"):
            check_int(name, getattr(self, name), minimum=1)


def _prefix(model: SmallResNet, frozen: int, x: torch.Tensor) -> torch.Tensor:
    x = model.backbone.prepare(x)
    for name in BLOCK_NAMES[:frozen]:
        x = getattr(model.backbone, name)(x)
    return x


class _Top(nn.Module):
    """The stages above the frozen ones, the pooling and the head (sharing ``model``'s weights)."""

    def __init__(self, model: SmallResNet, frozen: int) -> None:
        super().__init__()
        self.frozen = frozen
        self.stages = nn.ModuleList([getattr(model.backbone, n) for n in BLOCK_NAMES[frozen:]])
        self.pool, self.head, self._prepare = model.backbone.pool, model.head, model.backbone.prepare

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen == 0:
            x = self._prepare(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.pool(x).flatten(1))


class FeatureCache:
    """Outputs of frozen lower stages, computed once per ``(key, frozen)`` and dataset name."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, int, str], torch.Tensor] = {}

    @torch.no_grad()
    def get(self, model: SmallResNet, frozen: int, x: torch.Tensor, key: str | None, name: str) -> torch.Tensor:
        if frozen == 0:
            return x
        if key is None or (key, frozen, name) not in self.store:
            was = model.training
            model.eval()
            out = torch.cat([_prefix(model, frozen, chunk) for chunk in x.split(512)])
            model.train(was)
            if key is None:
                return out
            self.store[(key, frozen, name)] = out
        return self.store[(key, frozen, name)]


@dataclass
class Trained:
    """A trained strategy: the model, its best validation score and where training stopped."""

    strategy: str
    params: dict[str, Any]
    model: SmallResNet
    val_accuracy: float
    val_loss: float
    best_step: int
    steps_run: int
    frozen_below: int = 0
    cache_key: str | None = None
    cache: FeatureCache | None = field(default=None, repr=False)

    @torch.no_grad()
    def predict(self, data: Any) -> torch.Tensor:
        """Predicted labels for ``data`` (an ``ArrayDataset`` or an image tensor)."""
        x = data.images if hasattr(data, "images") else data
        cache = self.cache or FeatureCache()
        h = cache.get(self.model, self.frozen_below, x, self.cache_key, f"predict{len(x)}")
        top = _Top(self.model, self.frozen_below).eval()
        return torch.cat([top(chunk).argmax(1) for chunk in h.split(512)])


def _recipe(strategy: str | Recipe) -> Recipe:
    if isinstance(strategy, Recipe):
        return strategy
    return RECIPES[check_choice("strategy", strategy, STRATEGIES)]


def _rounds(steps: int, every: int) -> list[int]:
    n = -(-steps // every)
    return [steps // n + (1 if i < steps % n else 0) for i in range(n)]


def _split_steps(phases: Sequence[Phase], steps: int) -> list[int]:
    """Integer steps per phase, summing exactly to ``steps``."""
    raw = [p.share * steps for p in phases]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: steps - sum(out)]:
        out[i] += 1
    return out


def _optimizer(model: SmallResNet, phase: Phase, lr: float) -> torch.optim.Optimizer:
    if phase.decay is not None:
        return torch.optim.AdamW(discriminative_param_groups(model, lr * phase.lr_scale, phase.decay))
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr * phase.lr_scale)


def _run_phase(model: SmallResNet, phase: Phase, lr: float, steps: int, data: tuple, budget: Budget,
               g: torch.Generator, best: dict[str, Any], done: int) -> int:
    """Train one phase in rounds of ``eval_every`` steps (each through :func:`fit`), keeping the
    best validation checkpoint in ``best``; returns the steps run."""
    unfreeze(model)
    if phase.frozen:
        freeze(model, [f"backbone.{n}" for n in BLOCK_NAMES[: phase.frozen]])
    top, opt = _Top(model, phase.frozen), _optimizer(model, phase, lr)
    (xt, yt), (xv, yv) = data
    train = TensorDataset(xt, yt)
    batch = min(budget.batch_size, len(train))
    stale = 0
    for size in _rounds(steps, budget.eval_every):
        sampler = RandomSampler(train, num_samples=size * batch, generator=g)
        loader = DataLoader(train, batch_size=batch, sampler=sampler)
        fit(top, loader, epochs=1, optimizer=opt, progress=False)
        done += size
        ev = evaluate(top, TensorDataset(xv, yv))
        if (ev["accuracy"], -ev["loss"]) > (best["acc"], -best["loss"]):
            best.update(acc=ev["accuracy"], loss=ev["loss"], step=done, state=copy.deepcopy(model.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale >= budget.patience:
                break
    return done


def train_strategy(
    strategy: str | Recipe,
    train: Any,
    val: Any,
    *,
    lr: float,
    seed: int = 0,
    budget: Budget = Budget(),
    make_model: Callable[[int], SmallResNet] | None = None,
    cache: FeatureCache | None = None,
    cache_key: str | None = None,
) -> Trained:
    """Train one strategy at one learning rate, with early stopping on ``val``.

    ``make_model(num_classes)`` builds the starting network (default: the shipped pretrained
    backbone with a fresh head, or a random :class:`SmallResNet` for ``scratch``). ``cache``
    reuses the frozen stages' outputs on ``val`` and at prediction time across runs; with
    ``make_model`` give ``cache_key``, a name for where its frozen stages come from (no caching
    without one).
    """
    recipe = _recipe(strategy)
    if not isinstance(lr, float) or lr <= 0:
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    if len(train) == 0 or len(val) == 0:
        raise ValueError("train and val must not be empty")
    num_classes = len(train.classes)
    torch.manual_seed(seed)
    if make_model is None:
        model = load_pretrained(num_classes, seed=seed) if recipe.pretrained else SmallResNet(num_classes)
    else:
        model = make_model(num_classes)
    key = cache_key if make_model is not None else ("glyphs-resnet" if recipe.pretrained else None)
    cache = cache if cache is not None else FeatureCache()
    g = torch.Generator().manual_seed(seed)
    best: dict[str, Any] = {"acc": -1.0, "loss": float("inf"), "step": 0, "state": None}
    done = 0
    for phase, steps in zip(recipe.phases, _split_steps(recipe.phases, budget.steps)):
        if steps == 0:
            continue
        xt = cache.get(model, phase.frozen, train.images, None, "train")
        xv = cache.get(model, phase.frozen, val.images, key, f"val{len(val)}")
        done = _run_phase(model, phase, lr, steps, ((xt, train.labels), (xv, val.labels)), budget, g, best, done)
    model.load_state_dict(best["state"])
    unfreeze(model)
    model.eval()
    return Trained(recipe.name, {"lr": lr}, model, best["acc"], best["loss"], best["step"], done,
                   recipe.frozen_below, key, cache)


def tune_strategy(strategy: str | Recipe, train: Any, val: Any, *, seed: int = 0, grid: Sequence[float] | None = None,
                  **kwargs: Any) -> TuneResult:
    """Choose the learning rate of ``strategy`` on ``val`` from its declared grid
    (:func:`tlcourse.protocol.tune`); ``result.best`` is the :class:`Trained` run."""
    recipe = _recipe(strategy)
    lrs = list(grid if grid is not None else recipe.grid)
    return tune(lambda p, s: train_strategy(recipe, train, val, lr=float(p["lr"]), seed=s, **kwargs),
                lambda t: t.val_accuracy, {"lr": lrs}, seed=seed)


def _describe(recipe: Recipe) -> str:
    def what(p: Phase) -> str:
        return "head" if p.frozen == 4 else ("all" if p.frozen == 0 else f"{'+'.join(BLOCK_NAMES[p.frozen:])}+head")

    decays = {p.decay for p in recipe.phases}
    tail = "" if decays == {None} else f"; rates ×{recipe.phases[0].decay:g} per stage down"
    if len(recipe.phases) == 1:
        return what(recipe.phases[0]) + tail
    steps = [f"{what(p)}{'' if p.lr_scale == 1 else f' at {p.lr_scale:g}×lr'} ({p.share:.0%})" for p in recipe.phases]
    if len(recipe.phases) > 2:
        steps = [what(recipe.phases[0])] + ["+" + BLOCK_NAMES[p.frozen] for p in recipe.phases[1:]]
        return " → ".join(steps) + f" (equal shares of the steps){tail}"
    return " → ".join(steps) + tail


def copy_stages(target: SmallResNet, source: SmallResNet, n: int) -> SmallResNet:
    """Copy the first ``n`` backbone stages of ``source`` into ``target`` (Yosinski et al. 2014)."""
    check_int("n", n, minimum=0)
    if n > len(BLOCK_NAMES):
        raise ValueError(f"n must be <= {len(BLOCK_NAMES)} (the backbone's stages), got {n}")
    if n:  # the input normalisation belongs to the stem
        target.backbone.mean.copy_(source.backbone.mean)
        target.backbone.std.copy_(source.backbone.std)
    for name in BLOCK_NAMES[:n]:
        getattr(target.backbone, name).load_state_dict(getattr(source.backbone, name).state_dict())
    return target


def recipe_table(budget: Budget = Budget(), strategies: Sequence[str] = STRATEGIES) -> Any:
    """Every strategy's declared recipe as a DataFrame (the chapter shows it; nothing is hidden)."""
    import pandas as pd

    rows = []
    for name in strategies:
        r = RECIPES[check_choice("strategies", name, STRATEGIES)]
        rows.append({"strategy": r.name, "start": "pretrained" if r.pretrained else "random",
                     "what trains": _describe(r), "lr grid (AdamW)": ", ".join(f"{x:g}" for x in r.grid),
                     "optimizer steps": budget.steps, "batch": budget.batch_size,
                     "early stopping": f"val. accuracy every {budget.eval_every} steps, patience {budget.patience}",
                     "idea": r.idea})
    return pd.DataFrame(rows).set_index("strategy")
