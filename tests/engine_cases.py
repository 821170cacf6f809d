"""Tiny, deterministic runs of every training loop of the package, shared by the engine tests.

Each case builds its data and models from fixed seeds, trains for two epochs with a *global*
batch of ``GLOBAL`` examples (``GLOBAL // world_size`` per process) and returns the modules
whose state decides the result and the :class:`~tlcourse.train.History`. The same function runs
in one process (tests/test_engine_matrix.py), under ``torchrun`` (tests/engine_worker.py), with
mixed precision, interrupted and resumed, and on a GPU (tests/gpu/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tlcourse.distributed import world_size

Case = Callable[..., tuple[dict[str, nn.Module], Any]]
CASES: dict[str, Case] = {}


def case(name: str, accepts: tuple[str, ...] = ("amp", "channels_last", "compile", "sync_batchnorm", "checkpoint",
                                                 "resume", "device")) -> Callable[[Case], Case]:
    """Register a case; it receives only the options its loop takes."""

    def register(fn: Case) -> Case:
        def run(**options: Any) -> tuple[dict[str, nn.Module], Any]:
            return fn(**{k: v for k, v in options.items() if k in accepts})

        CASES[name] = run
        return fn

    return register


def per_process(global_batch: int) -> int:
    return global_batch // world_size()


def _mlp(seed: int, n_in: int = 8, n_out: int = 3, batch_norm: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    # no bias right before a batch norm: its gradient is zero up to rounding, which Adam would
    # amplify into noise that differs between runs
    layers = [nn.Linear(n_in, 16, bias=not batch_norm)] + ([nn.BatchNorm1d(16)] if batch_norm else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(16, n_out))


def _lenet(num_classes: int, feature_dim: int) -> nn.Module:
    """The course's LeNet, its biases right before batch norm frozen (see :func:`_mlp`)."""
    from tlcourse.adapt import LeNet

    model = LeNet(num_classes, feature_dim=feature_dim)
    for layer in (model.backbone.conv[0], model.backbone.conv[4], model.backbone.fc[0]):
        layer.bias.requires_grad_(False)
    return model


def _vectors(n: int, seed: int = 0) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return torch.utils.data.TensorDataset(x, y)


def _digits(n: int, seed: int, classes: int = 3, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = 0.2 * torch.rand(n, 3, 28, 28, generator=g) + shift
    for i, c in enumerate(labels.tolist()):
        images[i, :, 4 + 7 * c : 10 + 7 * c, 8:20] += 0.7
    return images, labels


@case("fit")
def fit_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.train import fit

    model = _mlp(0)
    history = fit(model, _vectors(64), epochs=2, batch_size=per_process(16), lr=1e-2, seed=0, val_data=_vectors(24, 1),
                  **options)
    return {"model": model}, history


@case("distill")
def distill_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.distill import distill

    teacher, student = _mlp(1, batch_norm=False), _mlp(2)
    history = distill(student, teacher, _vectors(64), epochs=2, batch_size=per_process(16), alpha=0.5, seed=0,
                      val_data=_vectors(24, 1), **options)
    return {"student": student}, history


def _multitask(weighting: str, **options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.data import ArrayDataset
    from tlcourse.multitask import MultiTaskModel, fit_multitask

    g = torch.Generator().manual_seed(3)
    images = torch.rand(48, 1, 6, 6, generator=g)
    labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    sets = {"a": ArrayDataset(images, labels), "b": ArrayDataset(images[:16], 1 - labels[:16])}
    torch.manual_seed(4)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(36, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU())
    model = MultiTaskModel(encoder, {"a": nn.Linear(8, 2), "b": nn.Linear(8, 2)})
    history = fit_multitask(model, sets, weighting, steps=6, steps_per_epoch=3, batch_size=per_process(8), seed=0,
                            track_cosine_every=2, weighting_lr=0.05, **options)
    return {"model": model}, history


for _name in ("pcgrad", "gradnorm", "dwa"):
    case(f"multitask_{_name}")(lambda _w=_name, **options: _multitask(_w, **options))


def _adaptation(loss: str, **options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.adapt import DomainAdversarialLoss, DomainDiscriminator, MMDLoss, train_adaptation

    xs, ys = _digits(32, 5)
    xt, _ = _digits(32, 6, shift=0.2)
    torch.manual_seed(7)
    model = _lenet(3, feature_dim=16)
    transfer = DomainAdversarialLoss(DomainDiscriminator(16, hidden=(16,))) if loss == "dann" else MMDLoss()
    history = train_adaptation(model, (xs, ys), xt, transfer, epochs=2, batch_size=per_process(16), seed=0,
                               optimizer="sgd", lr=0.01, lr_schedule=True, **options)
    return {"model": model, "transfer_loss": transfer}, history


case("adaptation_dann")(lambda **options: _adaptation("dann", **options))
case("adaptation_mmd")(lambda **options: _adaptation("mmd", **options))


@case("adda")
def adda_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.adapt import DomainDiscriminator, train_adda

    xs, _ = _digits(32, 8)
    xt, _ = _digits(32, 9, shift=0.2)
    torch.manual_seed(10)
    source_model = _lenet(3, feature_dim=16)
    history = train_adda(source_model, xs, xt, epochs=2, batch_size=per_process(16), seed=0, d_steps=2,
                         discriminator=DomainDiscriminator(16, hidden=(16,)), **options)
    return {"target": history.target_model, "discriminator": history.discriminator}, history


@case("pixel_da")
def pixel_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.adapt import (
        DomainAdversarialLoss,
        DomainDiscriminator,
        ImageDiscriminator,
        PixelGenerator,
        train_pixel_da,
    )

    xs, ys = _digits(32, 11)
    xt, _ = _digits(32, 12, shift=0.2)
    torch.manual_seed(13)
    gen, disc, clf = PixelGenerator(width=4), ImageDiscriminator(width=4), _lenet(3, feature_dim=8)
    feature_loss = DomainAdversarialLoss(DomainDiscriminator(8, hidden=(8,)))
    # small rates: Adam's first steps move weights whose gradient is zero up to rounding by about
    # lr, so runs that differ only in rounding drift apart in proportion to the rate
    history = train_pixel_da(gen, disc, clf, (xs, ys), xt, epochs=2, batch_size=per_process(16), seed=0, lr=2e-4,
                             lr_d=5e-5, feature_loss=feature_loss, **options)
    return {"generator": gen, "discriminator": disc, "classifier": clf, "feature_loss": feature_loss}, history


@case("gan_1d", accepts=("amp", "compile", "checkpoint", "resume", "device"))
def gan_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.adapt import train_gan_1d

    data = torch.randn(200, generator=torch.Generator().manual_seed(14)) * 0.5 + 2.0
    history = train_gan_1d(data, steps=6, steps_per_epoch=3, batch_size=per_process(16), seed=0, **options)
    return {"generator": history.generator, "discriminator": history.discriminator}, history


@case("dual_encoder")
def dual_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.multimodal import DualEncoder, fit_dual_encoder

    g = torch.Generator().manual_seed(15)
    images = torch.randn(32, 12, generator=g)
    texts = images @ torch.randn(12, 7, generator=g)
    torch.manual_seed(16)
    image_tower = nn.Sequential(nn.Linear(12, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU())
    model = DualEncoder(image_tower, nn.Linear(7, 8), 16, 8, embed_dim=6)
    history = fit_dual_encoder(model, images, texts, epochs=2, batch_size=per_process(16), lr=1e-2, **options)
    return {"model": model}, history


@case("captioner", accepts=("amp", "channels_last", "compile", "checkpoint", "resume", "device"))
def captioner_case(**options: Any) -> tuple[dict[str, nn.Module], Any]:
    from tlcourse.multimodal import Captioner, fit_captioner

    g = torch.Generator().manual_seed(17)
    tokens = torch.randint(4, 10, (32, 7), generator=g)
    tokens[:, 0], tokens[:, 5:], tokens[::2, 4:] = 1, 0, 0
    features = torch.randn(32, 4, 8, generator=g)
    torch.manual_seed(18)
    model = Captioner(10, feature_dim=8, d_model=16, nhead=2, num_layers=1, dim_feedforward=16, max_len=7, dropout=0.0)
    for layer in model.decoder.layers:  # the key bias of attention has zero gradient (see _mlp)
        layer.self_attn.in_proj_bias.requires_grad_(False)
        layer.multihead_attn.in_proj_bias.requires_grad_(False)
    history = fit_captioner(model, features, tokens, epochs=2, batch_size=per_process(8), lr=1e-2, **options)
    return {"model": model}, history


def flat_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every floating-point parameter and buffer, by ``module.name``, on the CPU."""
    out = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                out[f"{name}.{key}"] = value.detach().float().cpu().contiguous()
    return out


def comparable(history: Any) -> dict[str, Any]:
    """What two runs of a case must agree on (everything but the wall time)."""
    return {"records": history.records, "steps": history.steps, "best_epoch": history.best_epoch}
