"""A generative adversarial network in one dimension, and the optimal discriminator.

Goodfellow et al. (2014) train a generator ``G`` (noise → sample) against a discriminator ``D``
(sample → probability that it is real) on the minimax value (book Eq. (6.3); the optimal discriminator is Eq. (6.4))

    min_G max_D  V(D, G) = E_{x~p_data}[log D(x)] + E_{z~p_z}[log(1 − D(G(z)))].

For a fixed ``G`` the best discriminator is ``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` and the
value becomes ``V(D*, G) = −log 4 + 2·JSD(p_data ‖ p_g)``: the generator minimises a
Jensen–Shannon divergence, which is zero exactly when ``p_g = p_data`` (then ``D* ≡ ½``).
In practice ``G`` maximises ``log D(G(z))`` instead (the *non-saturating* loss), which has the
same fixed point but strong gradients early on.

Every adversarial adaptation method of chapter 6 reuses this game: DANN and ADDA put a domain
discriminator on *features*, pixel-level methods put it on *images*.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_int, check_positive, check_tensor

__all__ = [
    "mlp",
    "gan_losses",
    "gan_1d_update",
    "train_gan_1d",
    "gaussian_pdf",
    "kde",
    "optimal_discriminator",
    "js_divergence",
    "gan_value_at_optimum",
]


def mlp(in_features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    """A small fully connected network with LeakyReLU activations."""
    layers: list[nn.Module] = []
    width = check_int("in_features", in_features, minimum=1)
    for h in hidden:
        layers += [nn.Linear(width, check_int("hidden", h, minimum=1)), nn.LeakyReLU(0.2)]
        width = h
    layers.append(nn.Linear(width, check_int("out_features", out_features, minimum=1)))
    return nn.Sequential(*layers)


def gan_losses(
    d_real: torch.Tensor, d_fake: torch.Tensor, non_saturating: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator and generator losses from the discriminator's *logits*.

    ``loss_D = −E[log D(x)] − E[log(1 − D(G(z)))]`` (D maximises ``V``) and
    ``loss_G = −E[log D(G(z))]`` (non-saturating) or ``E[log(1 − D(G(z)))]`` (the minimax form).
    Pass ``d_fake`` computed *with* gradients to the generator; for the discriminator update
    detach the fake samples first.
    """
    check_tensor("d_real", d_real, dtype="float")
    check_tensor("d_fake", d_fake, dtype="float")
    if d_real.numel() == 0 or d_fake.numel() == 0:
        raise ValueError("d_real and d_fake must be non-empty")
    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.binary_cross_entropy_with_logits(
        d_fake, torch.zeros_like(d_fake)
    )
    if non_saturating:
        loss_g = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    else:
        loss_g = -F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    return loss_d, loss_g


def gan_1d_update(
    ctx: Any,
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    noise: torch.Tensor,
    non_saturating: bool = True,
) -> dict[str, torch.Tensor]:
    """One alternating GAN step, book Eq. (6.3): a discriminator update, then a generator update.

    ``ctx`` does the backward passes and optimizer steps (:class:`~tlcourse.train.engine.PlainContext`
    in your own loop, the engine's context in :func:`train_gan_1d`). Returns ``loss_d``,
    ``loss_g`` and ``d_real``/``d_fake``, the mean probabilities the discriminator assigns to
    real and generated samples, as tensors.
    """
    fake = generator(noise)
    loss_d, _ = gan_losses(discriminator(real), discriminator(fake.detach()), non_saturating)
    ctx.zero_grad(opt_d)
    ctx.backward(loss_d)
    ctx.step(opt_d)
    d_fake = discriminator(fake)
    _, loss_g = gan_losses(discriminator(real).detach(), d_fake, non_saturating)
    ctx.zero_grad(opt_g)
    ctx.backward(loss_g)
    ctx.step(opt_g)
    with torch.no_grad():
        d_real = torch.sigmoid(discriminator(real)).mean()
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_real": d_real,
            "d_fake": torch.sigmoid(d_fake.detach()).mean()}


def train_gan_1d(
    data: torch.Tensor,
    steps: int = 1500,
    batch_size: int = 128,
    noise_dim: int = 4,
    hidden: Sequence[int] = (32, 32),
    lr: float = 2e-3,
    non_saturating: bool = True,
    seed: int = 0,
    *,
    steps_per_epoch: int = 100,
    device: str | torch.device | None = None,
    progress: bool = False,
    **engine_options: Any,
) -> Any:
    """Fit a GAN to the 1-D sample ``data`` with alternating Adam steps (one D step, one G step).

    ``steps`` steps of ``batch_size`` samples (per process) drawn with replacement, on the
    engine in epochs of ``steps_per_epoch`` steps (``engine_options``: ``amp``, ``compile``,
    ``grad_clip``, ``checkpoint``, ``resume``, ``nan_check_every``). Returns a
    :class:`~tlcourse.train.History` whose ``steps`` hold the per-step ``loss_d``, ``loss_g``,
    ``d_real`` and ``d_fake`` (:func:`gan_1d_update`); the trained networks are
    ``history.generator``, which maps ``(n, noise_dim)`` standard normal noise to ``(n, 1)``
    samples, and ``history.discriminator``, which returns logits, both in data units.
    """
    from tlcourse.distributed import rank_slice
    from tlcourse.train import Engine
    from tlcourse.train.engine import check_engine_options
    from tlcourse.train.loaders import RandomBatches

    check_tensor("data", data, ndim=(1, 2), dtype="float")
    if data.ndim == 2 and data.shape[1] != 1:
        raise ValueError(f"data must be 1-D (n,) or (n, 1), got shape {tuple(data.shape)}")
    if len(data) < 2:
        raise ValueError(f"data must hold at least 2 samples, got {len(data)}")
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    noise_dim = check_int("noise_dim", noise_dim, minimum=1)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_positive("lr", lr)
    options = check_engine_options(engine_options, ("amp", "compile", "grad_clip", "checkpoint", "resume",
                                                    "nan_check_every"))
    data = data.reshape(-1, 1).float()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    generator, discriminator = mlp(noise_dim, hidden, 1), mlp(1, hidden, 1)
    # The data are standardised inside, so one learning rate fits any scale.
    mean, std = data.mean(), data.std().clamp_min(1e-6)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    loader = RandomBatches({"real": torch.utils.data.TensorDataset((data - mean) / std)}, {"real": batch_size},
                           steps_per_epoch, gen, total=steps)
    engine = Engine({"generator": generator, "discriminator": discriminator}, {"discriminator": opt_d,
                    "generator": opt_g}, device=device, progress=progress, desc="gan", trace=True, **options)
    nets = engine.prepare(generator), engine.prepare(discriminator)

    def step(batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        (real,) = batch["real"]
        noise = rank_slice(torch.randn(len(real) * ctx.world_size, noise_dim, generator=gen)).to(ctx.device)
        return gan_1d_update(ctx, *nets, opt_g, opt_d, real, noise, non_saturating)

    history = engine.run(loader, step, epochs=-(-steps // steps_per_epoch), manual=True)
    history.generator = _Destandardise(generator.cpu(), mean, std)
    history.discriminator = _Standardise(discriminator.cpu(), mean, std)
    return history


class _Destandardise(nn.Module):
    """Generator in data units: ``G(z) · std + mean``."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.noise_dim = net[0].in_features

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) * self.std + self.mean


class _Standardise(nn.Module):
    """Discriminator in data units: ``D((x − mean) / std)`` (logits)."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.reshape(-1, 1) - self.mean) / self.std)


def gaussian_pdf(x: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """Density of ``N(mean, std²)`` at ``x``."""
    check_positive("std", std)
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


def kde(samples: np.ndarray | torch.Tensor, grid: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """Gaussian kernel density estimate of 1-D ``samples`` on ``grid`` (Scott's rule by default)."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    s = np.asarray(samples, dtype=np.float64).ravel()
    if len(s) < 2:
        raise ValueError(f"samples must hold at least 2 values, got {len(s)}")
    if bandwidth is None:
        bandwidth = max(float(s.std()) * len(s) ** (-1 / 5), 1e-3)
    check_positive("bandwidth", bandwidth)
    grid = np.asarray(grid, dtype=np.float64)
    return gaussian_pdf(grid[:, None], s[None, :], bandwidth).mean(1)


def optimal_discriminator(p_data: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` (Goodfellow et al., 2014, Prop. 1); ½ where both are 0."""
    p_data = np.asarray(p_data, dtype=np.float64)
    p_g = np.asarray(p_g, dtype=np.float64)
    if p_data.shape != p_g.shape:
        raise ValueError(f"p_data and p_g must have the same shape, got {p_data.shape} and {p_g.shape}")
    if (p_data < 0).any() or (p_g < 0).any():
        raise ValueError("p_data and p_g must be densities (non-negative)")
    total = p_data + p_g
    return np.divide(p_data, total, out=np.full_like(total, 0.5), where=total > 0)


def js_divergence(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    """Jensen–Shannon divergence (nats) of two densities tabulated on a uniform grid of step ``dx``."""
    check_positive("dx", dx)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])) * dx)

    return 0.5 * kl(p) + 0.5 * kl(q)


def gan_value_at_optimum(p_data: np.ndarray, p_g: np.ndarray, dx: float) -> float:
    """``V(D*, G) = E_data[log D*] + E_g[log(1 − D*)]`` by quadrature; equals ``−log 4 + 2 JSD``."""
    check_positive("dx", dx)
    optimal_discriminator(p_data, p_g)  # validates the densities
    p_data = np.asarray(p_data, dtype=np.float64)
    p_g = np.asarray(p_g, dtype=np.float64)
    total = p_data + p_g
    # log D* = log p_data − log(p_data + p_g) and log(1 − D*) = log p_g − log(p_data + p_g), written
    # this way so that 1 − D* never underflows to 0 where p_g is tiny but positive; 0·log 0 = 0.
    safe_total = np.where(total > 0, total, 1.0)
    a = np.where(p_data > 0, p_data * (np.log(np.where(p_data > 0, p_data, 1.0)) - np.log(safe_total)), 0.0)
    b = np.where(p_g > 0, p_g * (np.log(np.where(p_g > 0, p_g, 1.0)) - np.log(safe_total)), 0.0)
    return float((a.sum() + b.sum()) * dx)
