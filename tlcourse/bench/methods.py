"""Engine against bare loops: one pair of runs per training method, on the same work.

Each :class:`Pair` builds fresh objects in one fixed initial state (not timed), then trains them
either through the package's method (which runs on :class:`~tlcourse.train.engine.Engine`) or
through a bare hand-written loop of the same method: same model, same batches in the same order,
same optimizer, only the loss, ``backward`` and optimizer steps. Both arms end with the same
weights (checked: the comparison is of the same arithmetic), so the ratio of their speeds is the
cost of what the engine adds — metrics, checks, progress bookkeeping, its own setup.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Pair", "PAIRS", "make_pairs"]


@dataclass
class Pair:
    """Two ways to run ``steps`` optimizer steps of one method on objects from ``build``."""

    name: str
    build: Callable[[], dict[str, Any]]
    engine: Callable[[dict[str, Any]], Any]
    bare: Callable[[dict[str, Any]], Any]
    steps: int

    def result(self, objects: dict[str, Any]) -> list[torch.Tensor]:
        """The trained tensors both arms must agree on."""
        return [t.detach().cpu() for key in sorted(objects) if isinstance(objects[key], nn.Module)
                for t in objects[key].state_dict().values() if isinstance(t, torch.Tensor)]


@lru_cache(maxsize=1)
def _digits(n: int) -> tuple[Any, Any]:
    from tlcourse.data import load_mnist, load_mnistm

    target = load_mnistm().train
    return load_mnist(channels=3).train.subset(range(n)), target.subset(range(len(target) - n, len(target))).images


def _fresh(seed: int, factory: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(seed)
    return factory()


def _fit_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.models import SmallResNet
    from tlcourse.train import fit, make_loader

    data = _digits(n)[0]

    def build() -> dict[str, Any]:
        model = _fresh(0, lambda: SmallResNet(10)).to(dev)
        return {"model": model, "opt": torch.optim.AdamW(model.parameters(), lr=1e-3)}

    def engine(o: dict[str, Any]) -> None:
        fit(o["model"], data, epochs=1, batch_size=64, optimizer=o["opt"], seed=0, device=dev, progress=False)

    def bare(o: dict[str, Any]) -> None:
        model, opt = o["model"], o["opt"]
        torch.manual_seed(0)
        loader = make_loader(data, 64, True, dev, seed=0)
        loader.sampler.set_epoch(0)
        model.train()
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return Pair("fit", build, engine, bare, -(-n // 64))


def _distill_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.distill import distill, soft_and_hard
    from tlcourse.models import SmallResNet
    from tlcourse.train import make_loader

    data = _digits(n)[0]
    teacher_out = torch.randn(n, 10, generator=torch.Generator().manual_seed(1)) * 3

    def build() -> dict[str, Any]:
        student = _fresh(1, lambda: SmallResNet(10, widths=(8, 16, 32))).to(dev)
        return {"student": student, "opt": torch.optim.AdamW(student.parameters(), lr=1e-3)}

    def engine(o: dict[str, Any]) -> None:
        distill(o["student"], None, data, teacher_outputs=teacher_out, epochs=1, batch_size=64,
                optimizer=o["opt"], seed=0, device=dev)

    def bare(o: dict[str, Any]) -> None:
        from tlcourse.utils import seed_everything

        student, opt = o["student"], o["opt"]
        seed_everything(0)
        cached = torch.utils.data.TensorDataset(data.images, data.labels, teacher_out)
        loader = make_loader(cached, 64, True, dev, generator=torch.Generator().manual_seed(0))
        student.train()
        for x, y, z in loader:
            x, y, z = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True), z.to(dev, non_blocking=True)
            soft, hard = soft_and_hard(student(x), z, y, 4.0)
            loss = 0.9 * soft + (1 - 0.9) * hard
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return Pair("distill", build, engine, bare, -(-n // 64))


def _multitask_pair(steps: int, dev: torch.device) -> Pair:
    from tlcourse.data import ArrayDataset
    from tlcourse.models.resnet import Backbone
    from tlcourse.multitask import MultiTaskModel, PCGrad, fit_multitask
    from tlcourse.train.loaders import RandomBatches

    train = _digits(1000)[0]
    sets = {"digit": train, "parity": ArrayDataset(train.images[:200], train.labels[:200] % 2)}

    def build() -> dict[str, Any]:
        model = _fresh(2, lambda: MultiTaskModel(Backbone(widths=(8, 16, 32)),
                                                 {"digit": nn.Linear(32, 10), "parity": nn.Linear(32, 2)}))
        model.to(dev)
        return {"model": model, "weighting": PCGrad(model.tasks, seed=0)}

    def engine(o: dict[str, Any]) -> None:
        fit_multitask(o["model"], sets, o["weighting"], steps=steps, steps_per_epoch=steps, batch_size=32, seed=0,
                      device=dev)

    def bare(o: dict[str, Any]) -> None:
        from tlcourse.utils import seed_everything

        model, weighting = o["model"], o["weighting"]
        seed_everything(0)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW([{"params": params}], lr=1e-3, weight_decay=0.0)
        model.train()
        for batch in RandomBatches(sets, dict.fromkeys(sets, 32), steps, torch.Generator().manual_seed(0)):
            out = model({t: x.to(dev) for t, (x, _) in batch.items()})
            losses = {t: F.cross_entropy(out[t], y.to(dev)) for t, (_, y) in batch.items()}
            opt.zero_grad(set_to_none=True)
            weighting.backward(losses, shared_parameters=model.shared_parameters())
            opt.step()

    return Pair("multitask (PCGrad)", build, engine, bare, steps)


def _adaptation_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.adapt import DomainAdversarialLoss, DomainDiscriminator, LeNet, train_adaptation
    from tlcourse.adapt.loop import adaptation_losses
    from tlcourse.train.loaders import PairedBatches

    source, target = _digits(n)

    def build() -> dict[str, Any]:
        model = _fresh(3, lambda: LeNet(10)).to(dev)
        loss = _fresh(4, lambda: DomainAdversarialLoss(DomainDiscriminator(128))).to(dev)
        loss.max_steps = n // 32
        return {"model": model, "loss": loss}

    def engine(o: dict[str, Any]) -> None:
        train_adaptation(o["model"], source, target, o["loss"], epochs=1, batch_size=32, seed=0, device=dev)

    def bare(o: dict[str, Any]) -> None:
        model, loss = o["model"], o["loss"]
        opt = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=1e-3)
        loader = PairedBatches(source, torch.utils.data.TensorDataset(target), 32, torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        model.train()
        for (xs, ys), (xt,) in loader:
            total = adaptation_losses(model.backbone, model.head, loss, xs.to(dev), ys.to(dev), xt.to(dev))["loss"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()

    return Pair("adaptation (DANN)", build, engine, bare, n // 32)


def _adda_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.adapt import DomainDiscriminator, LeNet, train_adda
    from tlcourse.adapt.adda import adda_update
    from tlcourse.train.engine import PlainContext
    from tlcourse.train.loaders import PairedBatches

    source, target = _digits(n)

    def build() -> dict[str, Any]:
        return {"model": _fresh(5, lambda: LeNet(10)).to(dev),
                "disc": _fresh(6, lambda: DomainDiscriminator(128, hidden=(500, 500))).to(dev)}

    def engine(o: dict[str, Any]) -> None:
        o["target"] = train_adda(o["model"], source, target, epochs=1, batch_size=32, seed=0,
                                 discriminator=o["disc"], device=dev).target_model

    def bare(o: dict[str, Any]) -> None:
        model, disc = o["model"].eval(), o["disc"].train()
        target_model = copy.deepcopy(model).train()
        for p in list(model.parameters()) + list(target_model.head.parameters()):
            p.requires_grad_(False)
        opt_t = torch.optim.Adam(target_model.backbone.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
        loader = PairedBatches(source, torch.utils.data.TensorDataset(target), 32, torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        for (xs, _), (xt,) in loader:
            adda_update(PlainContext(), model.backbone, target_model.backbone, disc, opt_d, opt_t, xs.to(dev),
                        xt.to(dev))
        for p in list(model.parameters()) + list(target_model.parameters()):
            p.requires_grad_(True)
        o["target"] = target_model

    return Pair("ADDA", build, engine, bare, n // 32)


def _pixel_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.adapt import ImageDiscriminator, LeNet, PixelGenerator, train_pixel_da
    from tlcourse.adapt.pixel import pixel_da_update
    from tlcourse.train.engine import PlainContext
    from tlcourse.train.loaders import PairedBatches

    source, target = _digits(n)
    weights = {"task": 1.0, "source": 0.0, "adv": 1.0, "diversity": 0.0, "feature": 1.0}

    def build() -> dict[str, Any]:
        return {"gen": _fresh(7, PixelGenerator).to(dev), "disc": _fresh(8, ImageDiscriminator).to(dev),
                "clf": _fresh(9, lambda: LeNet(10)).to(dev)}

    def engine(o: dict[str, Any]) -> None:
        train_pixel_da(o["gen"], o["disc"], o["clf"], source, target, epochs=1, batch_size=32, seed=0, device=dev)

    def bare(o: dict[str, Any]) -> None:
        gen, disc, clf = o["gen"].train(), o["disc"].train(), o["clf"].train()
        opt_g = torch.optim.Adam(list(gen.parameters()) + list(clf.parameters()), lr=2e-3, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4, betas=(0.5, 0.999))
        rng = torch.Generator().manual_seed(0)
        loader = PairedBatches(source, torch.utils.data.TensorDataset(target), 32, rng)
        torch.manual_seed(0)
        for (xs, ys), (xt,) in loader:
            z = gen.sample_noise(len(xs), rng, dev)
            pixel_da_update(PlainContext(), gen, disc, clf, opt_g, opt_d, xs.to(dev), ys.to(dev), xt.to(dev),
                            weights, z)

    return Pair("pixel-level GAN", build, engine, bare, n // 32)


def _gan_pair(steps: int, dev: torch.device) -> Pair:
    from tlcourse.adapt.gan import gan_1d_update, mlp, train_gan_1d
    from tlcourse.train.engine import PlainContext
    from tlcourse.train.loaders import RandomBatches

    data = torch.randn(4000, generator=torch.Generator().manual_seed(10)) * 0.5 + 3.0

    def build() -> dict[str, Any]:
        return {}

    def engine(o: dict[str, Any]) -> None:
        history = train_gan_1d(data, steps=steps, steps_per_epoch=steps, batch_size=128, seed=0, device=dev)
        o["g"], o["d"] = history.generator.net, history.discriminator.net

    def bare(o: dict[str, Any]) -> None:
        x = data.reshape(-1, 1)
        rng = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        gen, disc = mlp(4, (32, 32), 1).to(dev), mlp(1, (32, 32), 1).to(dev)
        mean, std = x.mean(), x.std().clamp_min(1e-6)
        opt_g = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))
        real_data = torch.utils.data.TensorDataset((x - mean) / std)
        for batch in RandomBatches({"real": real_data}, {"real": 128}, steps, rng):
            (real,) = batch["real"]
            noise = torch.randn(len(real), 4, generator=rng).to(dev)
            gan_1d_update(PlainContext(), gen, disc, opt_g, opt_d, real.to(dev), noise)
        o["g"], o["d"] = gen.cpu(), disc.cpu()

    return Pair("1-D GAN", build, engine, bare, steps)


@lru_cache(maxsize=1)
def _captions(n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    from tlcourse.data.captions import make_captions
    from tlcourse.multimodal import WordTokenizer

    split = make_captions(n, 10, seed=0)
    tok = WordTokenizer.fit(split.train.captions)
    return split.train.images, tok.encode(split.train.captions, max_len=16), len(tok)


def _dual_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.multimodal import ConvImageEncoder, DualEncoder, TokenTextEncoder, fit_dual_encoder
    from tlcourse.train.loaders import PairedBatches

    images, ids, vocab = _captions(n)

    def build() -> dict[str, Any]:
        model = _fresh(11, lambda: DualEncoder(ConvImageEncoder(width=8, out_dim=64),
                                               TokenTextEncoder(vocab, dim=32, out_dim=64), 64, 64, embed_dim=32))
        return {"model": model.to(dev)}

    def engine(o: dict[str, Any]) -> None:
        fit_dual_encoder(o["model"], images, ids, epochs=1, batch_size=64, device=dev)

    def bare(o: dict[str, Any]) -> None:
        model = o["model"].train()
        loader = PairedBatches(torch.utils.data.TensorDataset(images, ids), None, 64, torch.Generator().manual_seed(0))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=len(loader), pct_start=0.15)
        for (x, t), _ in loader:
            loss = model(x.to(dev), t.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    return Pair("dual encoder (CLIP)", build, engine, bare, n // 64)


def _captioner_pair(n: int, dev: torch.device) -> Pair:
    from tlcourse.multimodal import Captioner, fit_captioner
    from tlcourse.train.loaders import PairedBatches

    _, tokens, vocab = _captions(n)
    regions = torch.randn(n, 16, 32, generator=torch.Generator().manual_seed(12))

    def build() -> dict[str, Any]:
        return {"model": _fresh(13, lambda: Captioner(vocab, feature_dim=32, max_len=16)).to(dev)}

    def engine(o: dict[str, Any]) -> None:
        fit_captioner(o["model"], regions, tokens, epochs=1, batch_size=64, device=dev)

    def bare(o: dict[str, Any]) -> None:
        model = o["model"].train()

        def trim(batch: Any) -> Any:
            x, t = batch
            return x, t[:, : int((t != model.pad_id).sum(1).max())]

        loader = PairedBatches(torch.utils.data.TensorDataset(regions, tokens), None, 64,
                               torch.Generator().manual_seed(0), drop_last=False, transform=trim)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=len(loader), pct_start=0.15)
        for (x, t), _ in loader:
            loss = model.loss(x.to(dev), t.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    return Pair("captioner", build, engine, bare, -(-n // 64))


#: name → (pair builder, size in quick mode); the full benchmark is four times larger.
PAIRS: dict[str, tuple[Callable[[int, torch.device], Pair], int]] = {
    "fit": (_fit_pair, 256),
    "distill": (_distill_pair, 512),
    "multitask": (_multitask_pair, 6),
    "adaptation": (_adaptation_pair, 128),
    "adda": (_adda_pair, 128),
    "pixel": (_pixel_pair, 64),
    "gan": (_gan_pair, 50),
    "dual": (_dual_pair, 256),
    "captioner": (_captioner_pair, 256),
}


def make_pairs(quick: bool, device: torch.device, only: list[str] | None = None) -> list[Pair]:
    """The pairs (those named in ``only``), sized so that one arm takes about 0.1 s (``quick``) or
    0.5 s on two CPU cores."""
    names = [name for name in PAIRS if not only or name in only]
    return [PAIRS[name][0](PAIRS[name][1] * (1 if quick else 4), device) for name in names]
