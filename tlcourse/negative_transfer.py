"""Backbones for a controlled negative-transfer experiment (chapter 1).

Negative transfer means a source makes the target *worse* than the right baseline
(Wang et al., 2019). "The right baseline" depends on what is transferred, so each arm gets its
own control, differing from it only in where the weights came from:

* a **frozen** backbone (feature extraction) is compared with the same architecture frozen at
  its **random initialisation** (:func:`random_backbone`): do the source's features carry less
  about the target than random convolutions?
* a **fine-tuned** backbone is compared with the same network trained **from scratch**, both
  tuned on validation with the same step budget (:mod:`tlcourse.budget`): does starting there
  hurt once every weight may move?

:func:`misleading_backbone` pretrains the misleading source: images of the same kind as the
useful source's (coloured, textured printed characters, :func:`tlcourse.data.glyphs.load_glyphs`)
labelled by their *background colour*, a question that needs no shape at all.
"""

from __future__ import annotations

import torch

from tlcourse.budget import budget_loader
from tlcourse.checks import check_int, check_positive
from tlcourse.data.glyphs import BACKGROUND_CLASSES, load_glyphs
from tlcourse.models.resnet import SmallResNet, replace_head
from tlcourse.train import fit
from tlcourse.utils import seed_everything

__all__ = ["misleading_backbone", "random_backbone", "with_new_head"]


def misleading_backbone(steps: int = 60, n_per_class: int = 12, lr: float = 3e-3, batch_size: int = 64,
                        seed: int = 0) -> tuple[SmallResNet, float]:
    """A :class:`SmallResNet` trained for ``steps`` steps to name the background colour of
    coloured printed characters (8 classes, :data:`BACKGROUND_CLASSES`).

    Returns the model and its accuracy on a fresh, held-out sample of the same task.
    """
    check_int("steps", steps, minimum=1)
    check_int("n_per_class", n_per_class, minimum=1)
    check_positive("lr", lr)
    seed_everything(seed)
    model = SmallResNet(len(BACKGROUND_CLASSES))
    source = load_glyphs(n_per_class, seed=seed + 1, task="background")
    fit(model, budget_loader(source, steps, batch_size, seed), epochs=1, lr=lr, seed=seed, progress=False)
    held_out = load_glyphs(2, seed=seed + 10_001, task="background")
    model.eval()
    with torch.no_grad():
        accuracy = float((model(held_out.images).argmax(1) == held_out.labels).float().mean())
    return model, accuracy


def random_backbone(seed: int = 0) -> SmallResNet:
    """The same architecture at its random initialisation (the control of a frozen probe)."""
    check_int("seed", seed, minimum=0)
    torch.manual_seed(seed)
    return SmallResNet(len(BACKGROUND_CLASSES))


def with_new_head(model: SmallResNet, num_classes: int, seed: int = 0) -> SmallResNet:
    """A deep copy of ``model`` with a fresh ``num_classes``-way head (the source stays intact)."""
    import copy

    check_int("num_classes", num_classes, minimum=1)
    clone = copy.deepcopy(model)
    replace_head(clone, num_classes, seed=seed)
    return clone
