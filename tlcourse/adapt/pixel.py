"""Pixel-level adaptation: generate target-style images from labelled source images, train on them.

This is the idea of the source documents' "transfer learning with GANs" section, made precise by
PixelDA (Bousmalis et al., 2017) and CyCADA (Hoffman et al., 2018). A generator ``G(x_s, z)``
restyles a source image (``z`` is noise, since one digit has many plausible target renderings);
an image discriminator ``D`` tells generated images from *real target* images (not from source
images); and a task classifier ``T`` learns the source labels on the generated images. Because
``G`` is also trained to keep ``T`` right, it must preserve the content (which digit) while it
changes the style — the *content-preserving* (task-consistency) loss (book Eq. (6.12)):

    min_{G,T} max_D  E_t[log D(x_t)] + E_s[log(1 − D(G(x_s, z)))]
                     + w_task · E_s[CE(T(G(x_s, z)), y_s)] + w_src · E_s[CE(T(x_s), y_s)].

``T`` then classifies real target images. Passing a ``feature_loss`` (e.g. a
:class:`~tlcourse.adapt.dann.DomainAdversarialLoss`) also aligns ``T``'s features of generated
and real target images in the same step: pixel + feature level, as in CyCADA. An optional
mode-seeking term (Mao et al., 2019) rewards the generator for giving different images for
different noise.

The networks here are deliberately small so that a CPU trains them in tens of seconds: the generator's
noise enters as a learned low-resolution map (a "texture"), upsampled and concatenated with the
image, followed by one 3×3 and two 1×1 convolutions — enough to recolour strokes and
backgrounds, not to move them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.gan import gan_losses
from tlcourse.adapt.loop import feature_parts
from tlcourse.checks import check_int, check_non_negative, check_positive, check_tensor
from tlcourse.distributed import gather_with_grad, rank_slice
from tlcourse.train import Engine, History
from tlcourse.train.engine import PlainContext, check_engine_options
from tlcourse.train.loaders import as_dataset, paired_loader

__all__ = ["PixelGenerator", "ImageDiscriminator", "pixel_da_update", "pixel_da_step", "train_pixel_da", "translate"]


class PixelGenerator(nn.Module):
    """``G(x, z)``: image ``(N, C, H, W)`` in [0, 1] and noise ``(N, noise_dim)`` → image in [0, 1].

    Args:
        channels: image channels (input and output).
        noise_dim: size of the noise vector ``z``.
        width: channels of the hidden layers.
        noise_channels, noise_res: ``z`` is mapped linearly to ``noise_channels`` maps of
            ``noise_res × noise_res`` pixels, upsampled to the image size.
    """

    def __init__(
        self, channels: int = 3, noise_dim: int = 16, width: int = 16, noise_channels: int = 3, noise_res: int = 4
    ) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.noise_dim = check_int("noise_dim", noise_dim, minimum=1)
        self.noise_channels = check_int("noise_channels", noise_channels, minimum=1)
        self.noise_res = check_int("noise_res", noise_res, minimum=1)
        width = check_int("width", width, minimum=1)
        self.noise = nn.Linear(noise_dim, noise_channels * noise_res * noise_res)
        self.style = nn.Linear(noise_dim, width)  # a per-image shift of the hidden units
        self.conv = nn.Conv2d(channels + noise_channels, width, 3, padding=1)
        self.net = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1), nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 1),
        )

    def sample_noise(self, n: int, generator: torch.Generator | None = None, device: Any = None) -> torch.Tensor:
        """``n`` standard-normal noise vectors."""
        z = torch.randn(n, self.noise_dim, generator=generator)
        return z.to(device if device is not None else self.noise.weight.device)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor("x", x, ndim=4, dtype="float")
        if x.shape[1] != self.channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            else:
                raise ValueError(f"x must have 1 or {self.channels} channels, got shape {tuple(x.shape)}")
        if z is None:
            z = self.sample_noise(len(x), device=x.device)
        check_tensor("z", z, ndim=2, dtype="float")
        if z.shape != (len(x), self.noise_dim):
            raise ValueError(f"z must have shape ({len(x)}, {self.noise_dim}), got {tuple(z.shape)}")
        maps = self.noise(z).view(len(x), self.noise_channels, self.noise_res, self.noise_res)
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h = self.conv(torch.cat([2 * x - 1, maps], dim=1)) + self.style(z)[:, :, None, None]
        return torch.sigmoid(self.net(h))


class ImageDiscriminator(nn.Module):
    """Small convolutional critic: image ``(N, C, 28, 28)`` → one logit (real target = 1)."""

    def __init__(self, channels: int = 3, width: int = 16, spectral_norm: bool = True) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        width = check_int("width", width, minimum=1)
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        self.features = nn.Sequential(
            sn(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),  # 14×14
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),  # 7×7
            sn(nn.Conv2d(2 * width, 2 * width, 3, 2, 1)), nn.LeakyReLU(0.2, inplace=True),  # 4×4
            nn.Flatten(),
        )
        self.out = sn(nn.Linear(2 * width * 16 + 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4, dtype="float")
        if x.shape[1:] != (self.channels, 28, 28):
            raise ValueError(f"x must have shape (N, {self.channels}, 28, 28), got {tuple(x.shape)}")
        h = self.features(2 * x - 1)
        # Minibatch standard deviation (Karras et al., 2018): one feature telling D how varied the
        # batch is, so a generator that collapses to a single style is easy to catch. Under
        # torchrun it is the spread of the global batch (gathered with its gradient).
        pooled = gather_with_grad(h)
        spread = pooled.std(0, unbiased=False).mean() if len(pooled) > 1 else h.new_zeros(())
        return self.out(torch.cat([h, spread.expand(len(h), 1)], dim=1)).squeeze(1)


def pixel_da_update(
    ctx: Any,
    generator: nn.Module,
    discriminator: nn.Module,
    classifier: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    xt: torch.Tensor,
    weights: Mapping[str, float],
    z: torch.Tensor | None = None,
    feature_loss: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """One PixelDA step, Eq. (6.12): a discriminator update, then a joint generator + classifier update.

    ``ctx`` does the backward passes and optimizer steps (:class:`~tlcourse.train.engine.PlainContext`
    in your loop, the engine's context in :func:`train_pixel_da`). ``weights`` holds ``task``,
    ``source``, ``adv``, ``diversity`` and ``feature`` (the weights of the loss terms). Returns the
    metrics of :func:`pixel_da_step` as tensors.
    """
    if len(xs) == 0 or len(xt) == 0:
        raise ValueError(f"xs and xt must be non-empty batches, got {len(xs)} and {len(xt)} images")
    fake = generator(xs, z)
    # 1) discriminator: real target images → 1, generated images → 0
    d_real = discriminator(xt)
    d_fake = discriminator(fake.detach())
    loss_d, _ = gan_losses(d_real, d_fake)
    ctx.zero_grad(opt_d)
    ctx.backward(loss_d)
    ctx.step(opt_d)
    # 2) generator + classifier: fool D, keep the digit recognisable
    _, loss_adv = gan_losses(d_real.detach(), discriminator(fake))
    loss_feature = torch.zeros((), device=xs.device)
    if feature_loss is None:
        logits = classifier(fake)
    else:
        # pixel + feature level (CyCADA): also align the classifier's features of generated and
        # real target images, e.g. with a DomainAdversarialLoss (whose parameters opt_g holds).
        features, head = feature_parts(classifier)
        f_fake = features(fake)
        loss_feature = feature_loss(gather_with_grad(f_fake), gather_with_grad(features(xt)))
        logits = head(f_fake)
    loss_task = F.cross_entropy(logits, ys)
    loss_source = F.cross_entropy(classifier(xs), ys) if weights["source"] > 0 else torch.zeros((), device=xs.device)
    loss = (weights["adv"] * loss_adv + weights["task"] * loss_task + weights["source"] * loss_source
            + weights["feature"] * loss_feature)
    if weights["diversity"] > 0:
        # Mode seeking (Mao et al., 2019): two noise draws should give visibly different images.
        z1 = z if z is not None else generator.sample_noise(len(xs), device=xs.device)
        z2 = generator.sample_noise(len(xs), device=xs.device)
        fake1 = fake if z is not None else generator(xs, z1)
        ratio = (fake1 - generator(xs, z2)).abs().mean() / (z1 - z2).abs().mean()
        loss = loss + weights["diversity"] / (ratio + 1e-5)
    ctx.zero_grad(opt_g)
    ctx.backward(loss)
    ctx.step(opt_g)
    with torch.no_grad():
        d_acc = 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())
    return {
        "loss_d": loss_d.detach(),
        "loss_adv": loss_adv.detach(),
        "loss_task": loss_task.detach(),
        "loss_source": loss_source.detach(),
        "loss_feature": loss_feature.detach(),
        "d_accuracy": d_acc,
        "fake_accuracy": (logits.detach().argmax(1) == ys).float().mean(),
    }


def _pixel_weights(task_weight: float, source_weight: float, adv_weight: float, diversity_weight: float,
                   feature_weight: float) -> dict[str, float]:
    named = {"task": task_weight, "source": source_weight, "adv": adv_weight, "diversity": diversity_weight,
             "feature": feature_weight}
    for name, value in named.items():
        check_non_negative(f"{name}_weight", value)
    return named


def pixel_da_step(
    generator: nn.Module,
    discriminator: nn.Module,
    classifier: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    xt: torch.Tensor,
    task_weight: float = 1.0,
    source_weight: float = 0.0,
    adv_weight: float = 1.0,
    z: torch.Tensor | None = None,
    diversity_weight: float = 0.0,
    feature_loss: nn.Module | None = None,
    feature_weight: float = 1.0,
) -> dict[str, float]:
    """One PixelDA step in your own loop (:func:`pixel_da_update`); returns the metrics as floats.

    ``opt_g`` must hold the parameters of ``generator`` *and* ``classifier``; ``opt_d`` those of
    ``discriminator`` (and of ``feature_loss``, if any, in ``opt_g``). Returns ``loss_d``,
    ``loss_adv`` (the generator's non-saturating GAN loss), ``loss_task`` (CE on generated
    images), ``loss_source``, ``loss_feature``, ``d_accuracy`` and ``fake_accuracy`` (the
    classifier's accuracy on the generated batch).
    """
    weights = _pixel_weights(task_weight, source_weight, adv_weight, diversity_weight, feature_weight)
    for net in (generator, discriminator, classifier):
        net.train()
    out = pixel_da_update(PlainContext(), generator, discriminator, classifier, opt_g, opt_d, xs, ys, xt, weights,
                          z, feature_loss)
    if not all(torch.isfinite(v) for k, v in out.items() if k.startswith("loss")):
        raise FloatingPointError(f"a loss became non-finite: {out} (try a smaller lr)")
    return {k: float(v) for k, v in out.items()}


def _feature_loss_setup(feature_loss: nn.Module | None, classifier: nn.Module, total_steps: int) -> list:
    if feature_loss is None:
        return []
    try:
        feature_parts(classifier)
    except TypeError as err:
        raise TypeError(f"a feature_loss needs a classifier that exposes its features: {err}") from None
    if getattr(feature_loss, "max_steps", 0) is None:
        feature_loss.max_steps = total_steps
    return list(feature_loss.parameters())


def train_pixel_da(
    generator: nn.Module,
    discriminator: nn.Module,
    classifier: nn.Module,
    source: Any,
    target: Any,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    lr_d: float | None = 5e-4,
    task_weight: float = 1.0,
    source_weight: float = 0.0,
    adv_weight: float = 1.0,
    diversity_weight: float = 0.0,
    feature_loss: nn.Module | None = None,
    feature_weight: float = 1.0,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool = False,
    **engine_options: Any,
) -> History:
    """Train ``generator``, ``discriminator`` and ``classifier`` (in place) with :func:`pixel_da_update`.

    Adam with ``β₁ = 0.5`` (the usual GAN setting) for all networks; the discriminator learns
    more slowly (``lr_d``; ``None`` means ``lr``). The defaults are those of chapter 6, found
    by trial on MNIST → MNIST-M (see its note on hyper-parameters). Target labels are never
    read. ``batch_size`` is per process (the noise of the global batch is drawn at once, so runs
    with 1 or W processes see the same noise); ``engine_options`` go to the engine (``amp``,
    ``channels_last``, ``compile``, ``grad_clip``, ``sync_batchnorm``, ``checkpoint``,
    ``resume``, ``nan_check_every``). Under ``torchrun`` the diversity term compares images of
    the local batch only. Returns per-epoch means of the step metrics.
    """
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_positive("lr", lr)
    lr_d = lr if lr_d is None else check_positive("lr_d", lr_d)
    weights = _pixel_weights(task_weight, source_weight, adv_weight, diversity_weight, feature_weight)
    options = check_engine_options(engine_options, [k for k in ("amp", "channels_last", "compile", "grad_clip",
                                                                "sync_batchnorm", "checkpoint", "resume",
                                                                "nan_check_every")])
    source, target = as_dataset("source", source), as_dataset("target", target, labelled=False)
    gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.initial_seed() % 2**63))
    loader = paired_loader(source, target, batch_size, gen)
    g_params = list(generator.parameters()) + list(classifier.parameters())
    g_params += _feature_loss_setup(feature_loss, classifier, epochs * len(loader))
    opt_g = torch.optim.Adam(g_params, lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=(0.5, 0.999))
    if seed is not None:
        torch.manual_seed(seed)
    modules = {"generator": generator, "discriminator": discriminator, "classifier": classifier}
    if feature_loss is not None:
        modules["feature_loss"] = feature_loss
    engine = Engine(modules, {"discriminator": opt_d, "generator": opt_g}, device=device, progress=progress,
                    desc="pixel-da", **options)
    nets = engine.prepare(generator), engine.prepare(discriminator), engine.prepare(classifier)

    def step(batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        (xs, ys, *_), (xt, *_) = batch
        z = None
        if hasattr(generator, "sample_noise"):  # the global batch's noise, then this process's slice
            z = rank_slice(generator.sample_noise(len(xs) * ctx.world_size, gen, ctx.device))
        return pixel_da_update(ctx, *nets, opt_g, opt_d, xs, ys, xt, weights, z, feature_loss)

    history = engine.run(loader, step, epochs=epochs, manual=True)
    for net in (generator, discriminator, classifier):
        net.eval()
    return history


@torch.no_grad()
def translate(generator: nn.Module, images: torch.Tensor, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """Restyle ``images`` with ``generator`` (eval mode, seeded noise); returns CPU images in [0, 1]."""
    check_tensor("images", images, ndim=4, dtype="float")
    check_int("seed", seed, minimum=0)
    generator.eval()
    dev = next(generator.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    outs = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(dev)
        z = generator.sample_noise(len(x), gen, dev) if hasattr(generator, "sample_noise") else None
        outs.append(generator(x, z).cpu())
    return torch.cat(outs) if outs else images.new_empty((0, *images.shape[1:]))
