"""Tests of tlcourse.multitask: shared model, the five weightings, PCGrad, helpers, bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.data import ArrayDataset
from tlcourse.multitask import (
    DynamicWeightAverage,
    EqualWeighting,
    GradNorm,
    MultiTaskModel,
    PCGrad,
    UncertaintyWeighting,
    dwa_weights,
    evaluate_multitask,
    fit_multitask,
    gradient_cosine,
    make_weighting,
    pcgrad_project,
    relative_gain,
    task_gradients,
)

TASKS = ("a", "b")


def toy_model(seed: int = 0, tasks: tuple[str, ...] = TASKS) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    return MultiTaskModel(encoder, {t: nn.Linear(8, 1) for t in tasks})


def toy_losses(model: MultiTaskModel, scale: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g)
    targets = {t: torch.randn(16, 1, generator=g) for t in model.tasks}
    out = model(x)
    scale = scale or {}
    return {t: scale.get(t, 1.0) * F.mse_loss(out[t], targets[t]) for t in model.tasks}


# ------------------------------------------------------------------------------------ model


def test_model_returns_one_output_per_task() -> None:
    model = toy_model(tasks=("a", "b", "c"))
    out = model(torch.randn(5, 4))
    assert set(out) == {"a", "b", "c"} and all(v.shape == (5, 1) for v in out.values())
    assert model.tasks == ("a", "b", "c")
    assert len(model.shared_parameters()) == 2 and len(model.task_parameters("a")) == 2


def test_model_dict_input_runs_encoder_once_and_splits_rows() -> None:
    model = toy_model()
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    xa, xb = torch.randn(3, 4), torch.randn(5, 4)
    out = model({"a": xa, "b": xb})
    assert len(calls) == 1
    assert out["a"].shape == (3, 1) and out["b"].shape == (5, 1)
    torch.testing.assert_close(out["b"], model.heads["b"](model.encoder(xb)))


def test_model_bad_input() -> None:
    with pytest.raises(TypeError, match="encoder"):
        MultiTaskModel("not a module", {"a": nn.Linear(2, 2)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heads"):
        MultiTaskModel(nn.Identity(), {})
    with pytest.raises(TypeError, match=r"heads\['a'\]"):
        MultiTaskModel(nn.Identity(), {"a": 3})  # type: ignore[dict-item]
    model = toy_model()
    with pytest.raises(ValueError, match="no head"):
        model({"z": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="empty"):
        model({})


# ------------------------------------------------------------------------------------ equal


def test_equal_weighting_is_the_plain_sum() -> None:
    model = toy_model()
    losses = toy_losses(model)
    weights = EqualWeighting(TASKS).backward(losses)
    assert weights == {"a": 1.0, "b": 1.0}
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sum(toy_losses(model).values()).backward()
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad)


# ------------------------------------------------------------------------------ uncertainty


def test_uncertainty_weights_are_learnable_and_positive() -> None:
    uw = UncertaintyWeighting(TASKS)
    assert isinstance(uw.log_vars, nn.Parameter) and uw.log_vars.requires_grad
    assert list(uw.parameters()) == [uw.log_vars]
    assert uw.weights == pytest.approx({"a": 1.0, "b": 1.0})  # s = 0 starts as equal weighting
    # Fixed losses: the optimum of exp(-s) L + s is s = log L, i.e. weight 1 / L.
    fixed = {"a": torch.tensor(4.0), "b": torch.tensor(0.25)}
    opt = torch.optim.SGD(uw.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        uw.combine(fixed).backward()
        opt.step()
    assert uw.weights["a"] == pytest.approx(0.25, rel=1e-3)
    assert uw.weights["b"] == pytest.approx(4.0, rel=1e-3)
    # A huge step cannot make a weight negative (w = exp(-s)).
    with torch.no_grad():
        uw.log_vars.add_(torch.tensor([50.0, -5.0]))
    assert all(w > 0 for w in uw.weights.values())


def test_uncertainty_combine_matches_formula() -> None:
    uw = UncertaintyWeighting(TASKS, init_log_var=0.5)
    losses = {"b": torch.tensor(2.0), "a": torch.tensor(3.0)}  # key order does not matter
    expected = math.exp(-0.5) * 3.0 + 0.5 + math.exp(-0.5) * 2.0 + 0.5
    assert uw.combine(losses).item() == pytest.approx(expected)


# -------------------------------------------------------------------------------------- DWA


def test_dwa_weights_match_the_formula_with_T2() -> None:
    prev, before = [0.9, 0.5, 0.2], [1.0, 1.0, 0.1]
    r = [p / b for p, b in zip(prev, before)]
    e = [math.exp(x / 2.0) for x in r]
    expected = [3 * v / sum(e) for v in e]
    got = dwa_weights(prev, before, temperature=2.0)
    assert got.tolist() == pytest.approx(expected)
    assert got.sum().item() == pytest.approx(3.0)
    # The task whose loss fell least (largest ratio) gets the largest weight.
    assert int(got.argmax()) == 2


def test_dwa_class_uses_epoch_averages() -> None:
    dwa = DynamicWeightAverage(TASKS, temperature=2.0)
    assert dwa.temperature == 2.0
    epochs = [
        {"a": [2.0, 4.0], "b": [1.0, 1.0]},
        {"a": [1.0, 1.0], "b": [1.0, 1.0]},
        {"a": [0.5, 0.5], "b": [1.0, 1.0]},
    ]
    for i, epoch in enumerate(epochs):
        assert dwa.weights == {"a": 1.0, "b": 1.0} or i >= 2
        for la, lb in zip(epoch["a"], epoch["b"]):
            dwa.combine({"a": torch.tensor(la), "b": torch.tensor(lb)})
        dwa.end_epoch()
    assert dwa.epoch_losses == [[3.0, 1.0], [1.0, 1.0], [0.5, 1.0]]
    expected = dwa_weights([0.5, 1.0], [1.0, 1.0], 2.0).tolist()
    assert list(dwa.weights.values()) == pytest.approx(expected)
    assert dwa.weights["b"] > dwa.weights["a"]  # b stalled, a kept improving
    # The weights are used: combine = sum_k w_k L_k.
    total = dwa.combine({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert total.item() == pytest.approx(expected[0] * 1.0 + expected[1] * 2.0)


# --------------------------------------------------------------------------------- GradNorm


def test_gradnorm_lowers_the_weight_of_the_task_with_the_larger_gradient() -> None:
    model = toy_model()
    gn = GradNorm(TASKS, alpha=1.5)
    opt = torch.optim.SGD(gn.parameters(), lr=0.01)  # only the weights move: a static toy
    for _ in range(30):
        opt.zero_grad()
        model.zero_grad()
        losses = toy_losses(model, scale={"a": 10.0})  # same training rate, 10x the gradient
        gn.backward(losses, shared_parameters=model.shared_parameters())
        opt.step()
    w = gn.weights
    assert w["a"] < 1.0 < w["b"]
    assert sum(w.values()) == pytest.approx(2.0)
    # The weighted gradient norms moved towards each other.
    norms = gn.last_grad_norms
    assert norms["a"] / norms["b"] < 5.0


def test_gradnorm_raises_the_weight_of_the_slower_task() -> None:
    gn = GradNorm(TASKS, alpha=1.0)
    w = nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = torch.optim.SGD(gn.parameters(), lr=0.05)
    # Both losses have the same gradient (same quadratic), but after the first step task a's
    # loss is still at its initial value while b's has fallen by a quarter: a trains slower.
    for step in range(20):
        opt.zero_grad()
        quadratic = (w**2).sum() / 2  # = 1 at w = (1, 1)
        offset_b = 1.0 if step == 0 else 0.5
        losses = {"a": 1.0 + quadratic, "b": offset_b + quadratic}
        gn.backward(losses, shared_parameters=[w])
        opt.step()
    assert gn.weights["a"] > gn.weights["b"]


def test_gradnorm_trains_the_network_on_the_weighted_sum() -> None:
    model = toy_model()
    gn = GradNorm(TASKS)
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([0.5, 1.5]))
    weights = gn.backward(toy_losses(model), shared_parameters=model.shared_parameters())
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    losses = toy_losses(model)
    (weights["a"] * losses["a"] + weights["b"] * losses["b"]).backward()
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad)
    assert gn.task_weights.grad is not None


# ----------------------------------------------------------------------------------- PCGrad


def reference_pcgrad(grads: torch.Tensor, orders: list[list[int]]) -> torch.Tensor:
    """Yu et al. (2020), Algorithm 1, written plainly with a given visiting order per task."""
    out = []
    for i, order in enumerate(orders):
        gi = grads[i].clone()
        for j in order:
            dot = gi @ grads[j]
            if dot < 0:
                gi = gi - dot / (grads[j] @ grads[j]) * grads[j]
        out.append(gi)
    return torch.stack(out)


def test_pcgrad_two_conflicting_gradients_become_non_conflicting() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        g1 = torch.randn(20, generator=g)
        g2 = -g1 + 0.5 * torch.randn(20, generator=g)  # strongly conflicting
        grads = torch.stack([g1, g2])
        assert grads[0] @ grads[1] < 0
        p = pcgrad_project(grads)
        assert p[0] @ p[1] >= -1e-5
        assert p[0] @ g2 == pytest.approx(0.0, abs=1e-4) and p[1] @ g1 == pytest.approx(0.0, abs=1e-4)
        torch.testing.assert_close(p, reference_pcgrad(grads, [[1], [0]]))


def test_pcgrad_leaves_non_conflicting_gradients_unchanged() -> None:
    grads = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert ((grads @ grads.T) >= 0).all()
    torch.testing.assert_close(pcgrad_project(grads), grads)


def test_pcgrad_matches_reference_for_some_visiting_order() -> None:
    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(3, 6, generator=gen)
    grads[2] = -grads[0] + 0.1 * grads[2]
    projected = pcgrad_project(grads, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        others = [j for j in range(3) if j != i]
        candidates = [reference_pcgrad(grads, [list(o)] * 3)[i] for o in itertools.permutations(others)]
        assert any(torch.allclose(projected[i], c, atol=1e-6) for c in candidates)


def test_pcgrad_backward_writes_projected_sum_and_head_gradients() -> None:
    model = toy_model()
    pc = PCGrad(TASKS, seed=0, keep_gradients=True)
    shared = model.shared_parameters()
    losses = toy_losses(model, scale={"b": -1.0})  # flipping a loss's sign creates a conflict
    pc.backward(losses, shared_parameters=shared)
    assert pc.num_conflicts == 1
    assert pc.min_projected_cosine >= -1e-6
    p = pc.last_projected
    assert p is not None and p[0] @ p[1] >= -1e-6
    flat = torch.cat([q.grad.reshape(-1) for q in shared])
    torch.testing.assert_close(flat, p.sum(0))
    heads = {t: [q.grad.clone() for q in model.task_parameters(t)] for t in TASKS}
    model.zero_grad()
    losses = toy_losses(model, scale={"b": -1.0})
    sum(losses.values()).backward()
    for t in TASKS:
        for g, q in zip(heads[t], model.task_parameters(t)):
            torch.testing.assert_close(g, q.grad)


def test_task_gradients_and_cosine() -> None:
    model = toy_model()
    losses = toy_losses(model)
    shared = model.shared_parameters()
    grads = task_gradients(losses, shared)
    assert grads.shape == (2, sum(p.numel() for p in shared))
    ga = torch.autograd.grad(losses["a"], shared, retain_graph=True)
    torch.testing.assert_close(grads[0], torch.cat([g.reshape(-1) for g in ga]))
    cos = gradient_cosine(losses, shared)
    assert torch.diagonal(cos).tolist() == pytest.approx([1.0, 1.0])
    assert cos[0, 1].item() == pytest.approx(F.cosine_similarity(grads[0], grads[1], dim=0).item(), abs=1e-6)
    flipped = gradient_cosine({"a": losses["a"], "b": -losses["a"]}, shared)
    assert flipped[0, 1].item() == pytest.approx(-1.0, abs=1e-5)


# ---------------------------------------------------------------------- factory and helpers


@pytest.mark.parametrize(
    ("name", "cls"),
    [("equal", EqualWeighting), ("uncertainty", UncertaintyWeighting), ("dwa", DynamicWeightAverage),
     ("gradnorm", GradNorm), ("pcgrad", PCGrad), ("PCGrad", PCGrad)],
)
def test_make_weighting(name: str, cls: type) -> None:
    assert isinstance(make_weighting(name, TASKS), cls)


def test_make_weighting_passes_options_and_rejects_unknown() -> None:
    assert make_weighting("dwa", TASKS, temperature=5.0).temperature == 5.0
    assert make_weighting("gradnorm", TASKS, alpha=0.5).alpha == 0.5
    with pytest.raises(ValueError, match=r"name must be one of .*'equal'.*got 'magic'"):
        make_weighting("magic", TASKS)
    with pytest.raises(TypeError, match="unknown option"):
        make_weighting("equal", TASKS, alpha=1.0)


def test_relative_gain() -> None:
    gains, mean = relative_gain({"acc": 0.9, "err": 0.1}, {"acc": 0.8, "err": 0.2}, {"err": False})
    assert gains == pytest.approx({"acc": 12.5, "err": 50.0})
    assert mean == pytest.approx(31.25)
    with pytest.raises(ValueError, match="same tasks"):
        relative_gain({"a": 1.0}, {"b": 1.0})


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["equal", "uncertainty", "dwa", "gradnorm", "pcgrad"])
def test_bad_losses(name: str) -> None:
    w = make_weighting(name, TASKS)
    model = toy_model()
    shared = model.shared_parameters()
    with pytest.raises(ValueError, match="empty"):
        w.backward({}, shared_parameters=shared)
    with pytest.raises(ValueError, match=r"exactly the keys .*missing \['b'\], unexpected \['c'\]"):
        losses = toy_losses(model)
        w.backward({"a": losses["a"], "c": losses["b"]}, shared_parameters=shared)
    with pytest.raises(ValueError, match="scalar"):
        w.backward({"a": torch.ones(3, requires_grad=True), "b": torch.ones(())}, shared_parameters=shared)
    with pytest.raises(TypeError, match="losses must be a dict"):
        w.backward([torch.tensor(1.0)], shared_parameters=shared)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["gradnorm", "pcgrad"])
def test_gradient_methods_need_shared_parameters(name: str) -> None:
    model = toy_model()
    with pytest.raises(ValueError, match="shared_parameters is required"):
        make_weighting(name, TASKS).backward(toy_losses(model))


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="temperature"):
        DynamicWeightAverage(TASKS, temperature=-2.0)
    with pytest.raises(ValueError, match="temperature"):
        dwa_weights([1.0], [1.0], temperature=0.0)
    with pytest.raises(ValueError, match="same length"):
        dwa_weights([1.0, 2.0], [1.0], temperature=2.0)
    with pytest.raises(ValueError, match="alpha"):
        GradNorm(TASKS, alpha=-1.0)
    with pytest.raises(ValueError, match="tasks"):
        EqualWeighting([])
    with pytest.raises(ValueError, match="repeat"):
        EqualWeighting(["a", "a"])
    with pytest.raises(TypeError, match="tasks"):
        EqualWeighting("ab")
    with pytest.raises(ValueError, match="grads"):
        pcgrad_project(torch.ones(3))


# ------------------------------------------------------------------------------ training loop


def digit_like_sets(n: int = 64) -> dict[str, ArrayDataset]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 6, 6, generator=g)
    labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    return {"a": ArrayDataset(images, labels), "b": ArrayDataset(images, 1 - labels)}


@pytest.mark.parametrize("name", ["equal", "uncertainty", "dwa", "gradnorm", "pcgrad"])
def test_fit_multitask_runs_every_weighting(name: str) -> None:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU())
    model = MultiTaskModel(encoder, {t: nn.Linear(8, 2) for t in TASKS})
    sets = digit_like_sets()
    history = fit_multitask(model, sets, name, steps=6, batch_size=8, steps_per_epoch=2, track_cosine_every=3, seed=0)
    assert len(history.losses["a"]) == 6 and len(history.weights["b"]) == 6
    assert history.cosine_steps == [0, 3] and history.cosines[0].shape == (2, 2)
    scores = evaluate_multitask(model, sets)
    assert set(scores) == set(TASKS) and all(0.0 <= s <= 1.0 for s in scores.values())


def test_fit_multitask_bad_input() -> None:
    model = toy_model()
    sets = digit_like_sets()
    with pytest.raises(ValueError, match="no head"):
        fit_multitask(model, {"zzz": sets["a"]}, steps=1)
    with pytest.raises(ValueError, match="empty"):
        fit_multitask(model, {"a": ArrayDataset(torch.zeros(0, 1, 6, 6), torch.zeros(0, dtype=torch.long))}, steps=1)
    with pytest.raises(ValueError, match="steps"):
        fit_multitask(model, sets, steps=0)
    with pytest.raises(ValueError, match="weighting.tasks"):
        fit_multitask(model, sets, EqualWeighting(["a"]), steps=1)


def test_fit_multitask_stops_on_a_nan_loss_and_weightings_do_not_wait_for_the_device() -> None:
    from tlcourse.train import NonFiniteLossError

    sets = digit_like_sets()
    sets["b"] = ArrayDataset(torch.full_like(sets["b"].images, float("nan")), sets["b"].labels)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU())
    model = MultiTaskModel(encoder, {t: nn.Linear(8, 2) for t in TASKS})
    with pytest.raises(NonFiniteLossError, match=r"loss/b became nan at epoch 1, step 1"):
        fit_multitask(model, sets, "pcgrad", steps=4, batch_size=8, steps_per_epoch=2)
    # the weightings themselves accept any value: checking it would make the host wait
    losses = toy_losses(toy_model())
    weights = make_weighting("uncertainty", TASKS).backward({"a": losses["a"] * float("nan"), "b": losses["b"]},
                                                            as_tensors=True)
    assert set(weights) == set(TASKS) and all(isinstance(w, torch.Tensor) for w in weights.values())
    assert all(isinstance(w, float) for w in make_weighting("dwa", TASKS).backward(toy_losses(toy_model())).values())


def test_controls_keep_images_and_break_labels():
    from tlcourse.data import ArrayDataset
    from tlcourse.multitask import label_association, shuffled_labels, unlabelled_loss

    images = torch.rand(40, 1, 4, 4)
    labels = torch.arange(40) % 4
    shuffled = shuffled_labels(ArrayDataset(images, labels), seed=3)
    assert torch.equal(shuffled.images, images)
    assert torch.equal(shuffled.labels.sort().values, labels.sort().values)  # same label frequencies
    assert not torch.equal(shuffled.labels, labels)
    assert torch.equal(shuffled_labels(ArrayDataset(images, labels), seed=3).labels, shuffled.labels)  # seeded
    out = torch.randn(5, 3, requires_grad=True)
    loss = unlabelled_loss(out, torch.zeros(5))
    loss.backward()
    assert loss.item() == 0.0 and out.grad is not None and out.grad.abs().sum() == 0
    # a task fully determined by the class, and one independent of it
    cls = torch.arange(400) % 4
    same = label_association(cls % 2, cls)
    assert same["from_class"] == 1.0 and same["majority"] == 0.5 and same["nmi"] > 0.4
    assert same["rate"].shape == (4, 2) and abs(same["rate"].sum(1) - 1).max() < 1e-12
    indep = label_association(torch.arange(400) // 200, cls)
    assert indep["from_class"] == 0.5 and indep["nmi"] < 1e-9
