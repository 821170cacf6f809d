"""Tests of tlcourse.adapt: gradient reversal, schedules, MMD, CORAL, A-distance, DANN, ADDA, pixel level, GANs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tlcourse.adapt import (
    CORALLoss,
    DomainAdversarialLoss,
    DomainDiscriminator,
    GradientReversal,
    ImageDiscriminator,
    LeNet,
    MMDLoss,
    PixelGenerator,
    adapt_batchnorm,
    adaptation_step,
    adda_step,
    coral_loss,
    covariance,
    dann_lambda,
    dann_lr,
    dann_lr_scheduler,
    dann_step,
    domain_classifier_error,
    gan_losses,
    gan_value_at_optimum,
    gaussian_kernel,
    gaussian_pdf,
    grad_reverse,
    js_divergence,
    mmd2,
    optimal_discriminator,
    pixel_da_step,
    proxy_a_distance,
    train_adaptation,
    train_adda,
    train_dann,
    train_gan_1d,
    train_pixel_da,
    translate,
)

torch.set_num_threads(1)


# ---------------------------------------------------------------- gradient reversal and schedules
def test_grl_forward_is_identity_and_backward_is_minus_lambda_grad() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    for lam in (0.0, 0.3, 1.0, 2.5):
        x.grad = None
        y = grad_reverse(x, lam)
        assert torch.equal(y, x)
        (y * w).sum().backward()
        torch.testing.assert_close(x.grad, -lam * w)


def test_grl_module_and_composition() -> None:
    layer = GradientReversal(0.5)
    x = torch.randn(4, 2, requires_grad=True)
    layer(x).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * 2 * x.detach())
    layer.lambda_ = 2.0
    x.grad = None
    # reversing twice restores the sign: -2 * -2 = 4
    grad_reverse(layer(x), 2.0).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 4.0))


def test_dann_lambda_endpoints_and_monotone() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(math.tanh(5.0))
    assert dann_lambda(1.0) > 0.999
    values = [dann_lambda(p) for p in np.linspace(0, 1, 11)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert dann_lambda(0.5, gamma=10) == pytest.approx(2 / (1 + math.exp(-5)) - 1)


def test_dann_lr_schedule_matches_formula() -> None:
    assert dann_lr(0.0, lr0=0.01) == pytest.approx(0.01)
    assert dann_lr(1.0, lr0=0.01) == pytest.approx(0.01 / 11**0.75)
    net = nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sched = dann_lr_scheduler(opt, total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(dann_lr(1.0, lr0=0.01))


@pytest.mark.parametrize(
    "call",
    [
        lambda: grad_reverse(torch.zeros(2), -1.0),
        lambda: GradientReversal(-0.1),
        lambda: dann_lambda(0.5, gamma=-10),
        lambda: dann_lambda(0.5, gamma=0),
        lambda: dann_lambda(1.5),
        lambda: dann_lambda(-0.1),
        lambda: dann_lr(0.5, lr0=-1),
    ],
)
def test_schedules_and_grl_reject_bad_values(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_grl_type_errors() -> None:
    with pytest.raises(TypeError):
        grad_reverse(np.zeros(3))
    with pytest.raises(TypeError):
        dann_lambda("0.5")


# ---------------------------------------------------------------- MMD
def _naive_mmd2(x: np.ndarray, y: np.ndarray, sigmas: list[float], unbiased: bool) -> float:
    def k(a, b):
        return np.mean([np.exp(-np.sum((a - b) ** 2) / (2 * s * s)) for s in sigmas])

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    if unbiased:
        return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2 * kxy / (m * n)
    return kxx / m**2 + kyy / n**2 - 2 * kxy / (m * n)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_matches_naive_double_loop(unbiased: bool) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.2, size=(9, 3))
    sigmas = [0.5, 1.0, 2.0]
    got = mmd2(torch.tensor(x), torch.tensor(y), bandwidths=sigmas, unbiased=unbiased).item()
    assert got == pytest.approx(_naive_mmd2(x, y, sigmas, unbiased), rel=1e-9, abs=1e-12)


def test_gaussian_kernel_matches_sklearn_rbf() -> None:
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    got = gaussian_kernel(torch.tensor(x), torch.tensor(y), bandwidths=[0.7, 1.5]).numpy()
    want = 0.5 * (rbf_kernel(x, y, gamma=1 / (2 * 0.7**2)) + rbf_kernel(x, y, gamma=1 / (2 * 1.5**2)))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_mmd_near_zero_for_same_distribution_and_grows_with_shift() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    same = mmd2(x, torch.randn(400, 5, generator=g), bandwidths=[1.0, 2.0]).item()
    assert abs(same) < 0.01
    shifts = (0.25, 0.5, 1.0, 2.0)
    values = [mmd2(x, torch.randn(400, 5, generator=g) + shift, bandwidths=[1.0, 2.0]).item() for shift in shifts]
    assert values[0] > same
    assert all(b > a for a, b in zip(values, values[1:]))


def test_unbiased_mmd_is_unbiased_and_biased_one_is_not() -> None:
    g = torch.Generator().manual_seed(1)
    biased, unbiased = [], []
    for _ in range(200):
        x, y = torch.randn(10, 2, generator=g), torch.randn(10, 2, generator=g)
        biased.append(mmd2(x, y, bandwidths=[1.0]).item())
        unbiased.append(mmd2(x, y, bandwidths=[1.0], unbiased=True).item())
    # true MMD² is 0: the U-statistic averages to ~0, the V-statistic is positive on average
    assert abs(np.mean(unbiased)) < 3 * np.std(unbiased) / np.sqrt(len(unbiased))
    assert np.mean(biased) > 0.05
    assert min(biased) >= 0


def test_mmd_default_bandwidths_and_gradient() -> None:
    x = torch.randn(16, 4, requires_grad=True)
    y = torch.randn(16, 4) + 1
    loss = MMDLoss()(x, y)
    loss.backward()
    assert loss.item() > 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: mmd2(torch.randn(4, 3), torch.randn(4, 5)), ValueError),
        (lambda: mmd2(torch.randn(0, 3), torch.randn(4, 3)), ValueError),
        (lambda: mmd2(torch.randn(4, 3), torch.randn(4, 3), bandwidths=[1.0, 0.0]), ValueError),
        (lambda: mmd2(torch.randn(4, 3), torch.randn(4, 3), bandwidths=[-1.0]), ValueError),
        (lambda: mmd2(torch.randn(1, 3), torch.randn(4, 3), unbiased=True), ValueError),
        (lambda: MMDLoss(bandwidths=[0.0]), ValueError),
        (lambda: mmd2(torch.randn(4), torch.randn(4)), ValueError),
        (lambda: mmd2(np.zeros((4, 3)), torch.randn(4, 3)), TypeError),
        (lambda: mmd2(torch.zeros(4, 3, dtype=torch.long), torch.randn(4, 3)), TypeError),
    ],
)
def test_mmd_bad_input(call, error) -> None:
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------- CORAL
def test_coral_zero_for_identical_batches_and_matches_formula() -> None:
    rng = np.random.default_rng(2)
    xs, xt = rng.normal(size=(20, 6)), rng.normal(size=(15, 6)) * 2 + 1
    assert coral_loss(torch.tensor(xs), torch.tensor(xs)).item() == 0.0
    want = np.sum((np.cov(xs, rowvar=False) - np.cov(xt, rowvar=False)) ** 2) / (4 * 6**2)
    assert coral_loss(torch.tensor(xs), torch.tensor(xt)).item() == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(covariance(torch.tensor(xs)).numpy(), np.cov(xs, rowvar=False), rtol=1e-10)
    # CORAL ignores a mean shift (it only sees second-order statistics)
    assert coral_loss(torch.tensor(xs), torch.tensor(xs + 3.0)).item() == pytest.approx(0.0, abs=1e-12)
    assert CORALLoss()(torch.tensor(xs), torch.tensor(xt)).item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize(
    "a, b",
    [((5, 3), (5, 4)), ((0, 3), (5, 3)), ((1, 3), (5, 3)), ((5,), (5,))],
)
def test_coral_bad_input(a, b) -> None:
    with pytest.raises(ValueError):
        coral_loss(torch.randn(*a), torch.randn(*b))


# ---------------------------------------------------------------- proxy A-distance
def test_proxy_a_distance_near_zero_for_identical_and_near_two_for_separable() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    assert abs(proxy_a_distance(a, b)) < 0.3
    far = rng.normal(size=(400, 8)) + np.r_[6.0, np.zeros(7)]
    assert proxy_a_distance(torch.tensor(a), torch.tensor(far)) > 1.9
    assert 0.0 <= domain_classifier_error(a, far) < 0.03


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: proxy_a_distance(np.zeros((10, 3)), np.zeros((10, 4))), ValueError),
        (lambda: proxy_a_distance(np.zeros((0, 3)), np.zeros((10, 3))), ValueError),
        (lambda: proxy_a_distance(np.zeros(10), np.zeros(10)), ValueError),
        (lambda: proxy_a_distance(np.full((10, 3), np.nan), np.zeros((10, 3))), ValueError),
        (lambda: proxy_a_distance(np.zeros((10, 3)), np.zeros((10, 3)), test_size=1.5), ValueError),
        (lambda: proxy_a_distance([[0.0]], np.zeros((10, 1))), TypeError),
    ],
)
def test_proxy_a_distance_bad_input(call, error) -> None:
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------- DANN
def _toy_domains(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 28×28 'domains' of a 2-class problem: a bright bar on the left vs right half, target darker + offset."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, 2, (n,), generator=g)
    xs = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    for i, y in enumerate(ys):
        xs[i, 0, 10:18, (4 if y == 0 else 18) : (10 if y == 0 else 24)] = 1.0
    xt = 0.5 * xs.flip(0) + 0.3
    return xs.expand(-1, 3, -1, -1).contiguous(), ys, xt.expand(-1, 3, -1, -1).contiguous()


def test_domain_adversarial_loss_value_accuracy_and_schedule() -> None:
    torch.manual_seed(0)
    disc = DomainDiscriminator(4, hidden=(8,))
    loss_fn = DomainAdversarialLoss(disc, max_steps=10)
    f_s, f_t = torch.randn(6, 4), torch.randn(5, 4)
    loss = loss_fn(f_s, f_t)
    logits_s, logits_t = disc(f_s), disc(f_t)
    bce = nn.functional.binary_cross_entropy_with_logits
    want = 0.5 * (bce(logits_s, torch.ones(6)) + bce(logits_t, torch.zeros(5)))
    torch.testing.assert_close(loss, want)
    acc = ((logits_s > 0).sum() + (logits_t <= 0).sum()).item() / 11
    assert loss_fn.discriminator_accuracy == pytest.approx(acc)
    assert loss_fn.lambda_ == 0.0  # first step of the schedule
    for _ in range(10):
        loss_fn(f_s, f_t)
    assert loss_fn.lambda_ == pytest.approx(dann_lambda(1.0))


def test_domain_adversarial_loss_reverses_gradient_into_features() -> None:
    torch.manual_seed(0)
    disc = DomainDiscriminator(3, hidden=(5,))
    f_s = torch.randn(4, 3, requires_grad=True)
    f_t = torch.randn(4, 3)
    DomainAdversarialLoss(disc, lambda_=0.7, schedule=False)(f_s, f_t).backward()
    g_reversed = f_s.grad.clone()
    f_s.grad = None
    bce = nn.functional.binary_cross_entropy_with_logits
    (0.5 * (bce(disc(f_s), torch.ones(4)) + bce(disc(f_t), torch.zeros(4)))).backward()
    torch.testing.assert_close(g_reversed, -0.7 * f_s.grad)


def test_domain_adversarial_loss_bad_input() -> None:
    loss_fn = DomainAdversarialLoss(4)
    with pytest.raises(ValueError):
        loss_fn(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError):
        loss_fn(torch.randn(0, 4), torch.randn(3, 4))
    with pytest.raises(ValueError):
        DomainAdversarialLoss(4, gamma=-1.0)
    with pytest.raises(ValueError):
        DomainAdversarialLoss(4, lambda_=-1.0)
    with pytest.raises(TypeError):
        DomainAdversarialLoss("disc")


def test_dann_steps_reduce_losses_on_tiny_problem() -> None:
    torch.manual_seed(0)
    xs, ys, xt = _toy_domains()
    model = LeNet(num_classes=2, feature_dim=16)
    adv = DomainAdversarialLoss(DomainDiscriminator(16, hidden=(16,)), lambda_=0.1, schedule=False)
    opt = torch.optim.Adam(list(model.parameters()) + list(adv.parameters()), lr=1e-3)
    first = dann_step(model, adv, opt, xs, ys, xt)
    for _ in range(20):
        last = dann_step(model, adv, opt, xs, ys, xt)
    assert last["cls_loss"] < 0.5 * first["cls_loss"]
    assert last["loss"] < first["loss"]
    assert last["source_accuracy"] == 1.0
    assert 0.0 <= last["discriminator_accuracy"] <= 1.0 and last["lambda"] == pytest.approx(0.1)


def test_train_dann_and_mmd_coral_loops_run() -> None:
    xs, ys, xt = _toy_domains(32)
    model = LeNet(num_classes=2, feature_dim=8)
    history = train_dann(model, (xs, ys), xt, epochs=2, batch_size=16, seed=0)
    adv = history.adversarial_loss
    assert len(history) == 2 and adv.max_steps == 4 and adv.step == 4
    assert history["lambda"][-1] == pytest.approx(dann_lambda(3 / 4))
    for loss in (MMDLoss(), CORALLoss()):
        h = train_adaptation(LeNet(2, feature_dim=8), (xs, ys), xt, loss, epochs=1, batch_size=16, seed=0)
        assert np.isfinite(h.last["transfer_loss"])
    h = train_adaptation(
        LeNet(2, feature_dim=8), (xs, ys), epochs=1, batch_size=16, seed=0, optimizer="sgd", lr=0.01, lr_schedule=True
    )
    assert h.last["transfer_loss"] == 0.0


def test_adaptation_bad_input() -> None:
    xs, ys, xt = _toy_domains(16)
    model = LeNet(2, feature_dim=8)
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError):
        adaptation_step(model, MMDLoss(), opt, xs, ys, xt[:0])
    with pytest.raises(ValueError):
        adaptation_step(model, MMDLoss(), opt, xs, ys, None)
    with pytest.raises(ValueError):
        train_adaptation(model, (xs, ys), None, MMDLoss(), epochs=1)
    with pytest.raises(ValueError):
        train_adaptation(model, (xs, ys[:3]), xt, MMDLoss(), epochs=1)
    with pytest.raises(ValueError):
        train_adaptation(model, (xs, ys), xt, epochs=0)
    with pytest.raises(ValueError):
        train_adaptation(model, (xs, ys), xt, MMDLoss(), epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError):
        train_adaptation(model, (xs, ys), xt, MMDLoss(), epochs=1, trade_off=-1.0)
    with pytest.raises(TypeError):
        adaptation_step(nn.Linear(3, 2), None, opt, xs, ys)
    with pytest.raises(ValueError):
        model(torch.rand(2, 3, 32, 32))


# ---------------------------------------------------------------- AdaBN
def test_adapt_batchnorm_recomputes_statistics_without_touching_weights() -> None:
    torch.manual_seed(0)
    model = LeNet(2, feature_dim=8)
    images = torch.rand(40, 3, 28, 28) * 0.5 + 0.25
    adapted = adapt_batchnorm(model, images, batch_size=40)
    bn = adapted.backbone.conv[2]
    with torch.no_grad():
        pre = adapted.backbone.conv[1](adapted.backbone.conv[0](images - 0.5))
    torch.testing.assert_close(bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(adapted.head.weight, model.head.weight)
    assert model.backbone.conv[2].running_mean.abs().sum() == 0  # the original is untouched
    with pytest.raises(ValueError):
        adapt_batchnorm(nn.Linear(2, 2), torch.rand(4, 2))
    with pytest.raises(ValueError):
        adapt_batchnorm(model, images[:0])


# ---------------------------------------------------------------- ADDA
def test_adda_steps_reduce_their_losses() -> None:
    torch.manual_seed(0)
    xs, ys, xt = _toy_domains()
    source = LeNet(2, feature_dim=16)
    train_adaptation(source, (xs, ys), epochs=3, batch_size=16, seed=0)
    target = LeNet(2, feature_dim=16)
    target.load_state_dict(source.state_dict())
    disc = DomainDiscriminator(16, hidden=(32,))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    opt_t = torch.optim.Adam(target.backbone.parameters(), lr=1e-9)  # freeze M_t: D alone learns
    first = adda_step(source.backbone, target.backbone, disc, opt_d, opt_t, xs, xt)
    for _ in range(20):
        last = adda_step(source.backbone, target.backbone, disc, opt_d, opt_t, xs, xt)
    assert last["loss_d"] < first["loss_d"]
    # now D is frozen and M_t learns to fool it: the inverted-label loss falls
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-9)
    opt_t = torch.optim.Adam(target.backbone.parameters(), lr=1e-3)
    first = adda_step(source.backbone, target.backbone, disc, opt_d, opt_t, xs, xt)
    for _ in range(10):
        last = adda_step(source.backbone, target.backbone, disc, opt_d, opt_t, xs, xt)
    assert last["loss_t"] < first["loss_t"]


def test_train_adda_keeps_source_frozen_and_head_shared() -> None:
    xs, ys, xt = _toy_domains(32)
    source = LeNet(2, feature_dim=8)
    train_adaptation(source, (xs, ys), epochs=1, batch_size=16, seed=0)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    history = train_adda(source, xs, xt, epochs=2, batch_size=16, seed=0)
    target = history.target_model
    assert isinstance(history.discriminator, DomainDiscriminator) and not history.discriminator.training
    for k, v in source.state_dict().items():
        assert torch.equal(v, before[k]), k
    torch.testing.assert_close(target.head.weight, source.head.weight)
    assert not torch.equal(target.backbone.conv[0].weight, source.backbone.conv[0].weight)
    assert len(history) == 2 and all(p.requires_grad for p in source.parameters())
    with pytest.raises(TypeError):
        train_adda(nn.Linear(2, 2), xs, xt, epochs=1)
    with pytest.raises(ValueError):
        train_adda(source, xs, xt[:0], epochs=1)


# ---------------------------------------------------------------- pixel level
def test_pixel_generator_shapes_and_step() -> None:
    torch.manual_seed(0)
    xs, ys, xt = _toy_domains(16)
    gen, disc, clf = PixelGenerator(width=8), ImageDiscriminator(width=8), LeNet(2, feature_dim=8)
    out = gen(xs[:, :1])
    assert out.shape == (16, 3, 28, 28) and out.min() >= 0 and out.max() <= 1
    opt_g = torch.optim.Adam(list(gen.parameters()) + list(clf.parameters()), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    first = pixel_da_step(gen, disc, clf, opt_g, opt_d, xs, ys, xt)
    for _ in range(15):
        last = pixel_da_step(gen, disc, clf, opt_g, opt_d, xs, ys, xt)
    assert last["loss_task"] < first["loss_task"]
    assert translate(gen, xs, seed=1).shape == xs.shape
    torch.testing.assert_close(translate(gen, xs, seed=1), translate(gen, xs, seed=1))
    with pytest.raises(ValueError):
        gen(xs, torch.randn(3, gen.noise_dim))
    with pytest.raises(ValueError):
        disc(torch.rand(2, 3, 32, 32))


def test_train_pixel_da_with_feature_loss_and_diversity() -> None:
    xs, ys, xt = _toy_domains(32)
    gen, disc, clf = PixelGenerator(width=8), ImageDiscriminator(width=8), LeNet(2, feature_dim=8)
    feature_loss = DomainAdversarialLoss(DomainDiscriminator(8, hidden=(8,)))
    history = train_pixel_da(gen, disc, clf, (xs, ys), xt, epochs=2, batch_size=16, seed=0,
                             feature_loss=feature_loss, diversity_weight=0.1)
    assert len(history) == 2 and feature_loss.max_steps == 4
    assert all(np.isfinite(v) for v in history.last.values())
    assert history.last["loss_feature"] > 0
    with pytest.raises(TypeError):
        train_pixel_da(gen, disc, nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 2)), (xs, ys), xt, epochs=1,
                       feature_loss=feature_loss)
    with pytest.raises(ValueError):
        train_pixel_da(gen, disc, clf, (xs, ys), xt[:0], epochs=1)


# ---------------------------------------------------------------- GAN helpers
def test_optimal_discriminator_and_value_at_optimum() -> None:
    grid = np.linspace(-8, 8, 4001)
    dx = grid[1] - grid[0]
    p, q = gaussian_pdf(grid, 0, 1), gaussian_pdf(grid, 1, 1.5)
    d = optimal_discriminator(p, q)
    np.testing.assert_allclose(d, p / (p + q))
    np.testing.assert_allclose(optimal_discriminator(p, p), 0.5)
    assert gan_value_at_optimum(p, q, dx) == pytest.approx(-math.log(4) + 2 * js_divergence(p, q, dx), abs=1e-5)
    assert gan_value_at_optimum(p, p, dx) == pytest.approx(-math.log(4), abs=1e-6)
    assert js_divergence(p, p, dx) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        optimal_discriminator(p, q[:10])
    with pytest.raises(ValueError):
        optimal_discriminator(-p, q)


def test_gan_losses_match_bce_forms() -> None:
    d_real, d_fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    loss_d, loss_g = gan_losses(d_real, d_fake)
    sig = torch.sigmoid
    want_d = -(torch.log(sig(d_real)).mean() + torch.log(1 - sig(d_fake)).mean())
    torch.testing.assert_close(loss_d, want_d)
    torch.testing.assert_close(loss_g, -torch.log(sig(d_fake)).mean())
    _, minimax = gan_losses(d_real, d_fake, non_saturating=False)
    torch.testing.assert_close(minimax, torch.log(1 - sig(d_fake)).mean())
    with pytest.raises(ValueError):
        gan_losses(torch.tensor([]), d_fake)


def test_gan_1d_learns_a_gaussian() -> None:
    data = torch.randn(2000) * 0.5 + 3.0
    history = train_gan_1d(data, steps=400, batch_size=64, seed=0)
    gen = history.generator
    with torch.no_grad():
        samples = gen(torch.randn(2000, gen.noise_dim)).squeeze(1)
    assert abs(samples.mean().item() - 3.0) < 0.3
    assert 0.25 < samples.std().item() < 0.9
    assert len(history.steps["loss_d"]) == 400 and len(history) == 4  # 4 epochs of 100 steps
    with pytest.raises(ValueError):
        train_gan_1d(torch.randn(10, 2))


# ---------------------------------------------------------------- the loops' contracts
class _TimmStyle(nn.Module):
    """A model that exposes features and logits as methods, as timm models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 8), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _LogitAwareLoss(nn.Module):
    """A CDAN-like transfer loss: it asks for the classifier's predictions too."""

    uses_logits = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, f_s, f_t, logits_s, logits_t):
        self.calls.append((f_s.shape[1], logits_s.shape[1], logits_t.shape[0]))
        mean_gap = (f_s.mean(0) - f_t.mean(0)).pow(2).sum()
        return mean_gap + (logits_s.softmax(1).mean(0) - logits_t.softmax(1).mean(0)).pow(2).sum()


def test_adaptation_takes_timm_style_models_and_logit_aware_losses() -> None:
    xs, ys, xt = _toy_domains(32)
    model, loss = _TimmStyle(), _LogitAwareLoss()
    history = train_adaptation(model, (xs, ys), xt, loss, epochs=2, batch_size=16, seed=0)
    assert len(history) == 2 and loss.calls == [(8, 2, 16)] * 4
    assert history["transfer_loss"][-1] >= 0.0
    with pytest.raises(TypeError, match="forward_features"):
        train_adaptation(nn.Linear(2, 2), (xs, ys), xt, loss, epochs=1)


def test_adaptation_accepts_dataloaders_and_datasets_alike() -> None:
    xs, ys, xt = _toy_domains(32)
    source = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=16, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    history = train_adaptation(LeNet(2, feature_dim=8), source, xt, MMDLoss(), epochs=2, seed=0)
    assert len(history) == 2 and np.isfinite(history.last["loss"])
    adda = train_adda(LeNet(2, feature_dim=8), source, xt, epochs=1, seed=0)
    assert isinstance(adda.target_model, LeNet)
