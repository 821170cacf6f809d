"""Pretrained backbones: the one shipped with the package, and torchvision's (online).

``load_pretrained()`` returns the course's "ImageNet model": a :class:`SmallResNet` whose
backbone was trained by ``scripts/pretrain_backbone.py`` on printed characters
(:mod:`tlcourse.data.glyphs`) and ships inside the package as safetensors, so that every
transfer experiment runs offline. Its model card (source task, accuracy, size, how to
regenerate) is :func:`model_card`.

``torchvision_backbone()`` is the same recipe with a torchvision model: ImageNet weights are
downloaded when there is a network; offline it fails at once with one actionable message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlcourse.checkpoint import load_weights
from tlcourse.checks import check_choice, check_int
from tlcourse.models.resnet import SmallResNet, replace_head

__all__ = ["PRETRAINED", "load_pretrained", "model_card", "weights_path", "torchvision_backbone", "TORCHVISION_MODELS"]

#: Shipped pretrained models: name → (weights file, model card file).
PRETRAINED: dict[str, tuple[str, str]] = {
    "glyphs-resnet": ("glyphs-resnet.safetensors", "glyphs-resnet.json"),
    "letters-resnet": ("letters-resnet.safetensors", "letters-resnet.json"),  # same recipe, no digit classes
}


def _weights_dir() -> Path:
    return Path(str(resources.files("tlcourse.models") / "weights"))


def weights_path(name: str = "glyphs-resnet") -> Path:
    """Path of the shipped weights file of ``name``."""
    check_choice("name", name, PRETRAINED)
    return _weights_dir() / PRETRAINED[name][0]


def model_card(name: str = "glyphs-resnet") -> dict[str, Any]:
    """The model card of a shipped backbone: source task, accuracy, parameters, file size."""
    check_choice("name", name, PRETRAINED)
    return json.loads((_weights_dir() / PRETRAINED[name][1]).read_text())


def load_pretrained(num_classes: int | None = 10, name: str = "glyphs-resnet", seed: int | None = None, *,
                    class_names: Sequence[str] | None = None) -> SmallResNet:
    """The shipped pretrained :class:`SmallResNet` with a fresh ``num_classes``-way head.

    ``num_classes=None`` keeps the source task's head (the printed-character classifier, with
    its class names). ``class_names`` names the new head's outputs (``num_classes`` may then be
    left out: it is ``len(class_names)``). ``seed`` makes the new head's initialisation
    reproducible. ``model.preprocess`` is the input contract: images in [0, 1], at least 8×8
    (resized to 28×28), normalised inside the model (:mod:`tlcourse.models.transforms`).
    """
    if class_names is not None and num_classes == 10 and not isinstance(class_names, str):
        num_classes = len(class_names)  # the default 10 yields to the names given
    card = model_card(name)
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped weights {path.name} are missing from the installed package; "
            "reinstall tlcourse or regenerate them with scripts/pretrain_backbone.py"
        )
    model = SmallResNet(card["source_classes"], widths=tuple(card["widths"]))
    load_weights(path, model)
    if num_classes is not None:
        replace_head(model, num_classes, seed=seed, class_names=class_names)
    elif class_names is not None:
        raise ValueError("class_names names a new head: pass num_classes too (num_classes=None keeps the source head)")
    else:
        from tlcourse.data.glyphs import GLYPH_CLASSES

        if len(GLYPH_CLASSES) == card["source_classes"]:
            model.class_names = list(GLYPH_CLASSES)
    return model


TORCHVISION_MODELS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "efficientnet_b0")


def torchvision_backbone(name: str, num_classes: int, weights: str | None = None) -> nn.Module:
    """A torchvision classifier with a new ``num_classes``-way head.

    Args:
        name: one of :data:`TORCHVISION_MODELS`.
        weights: ``None`` (random initialisation, works offline) or ``"imagenet"`` (the
            default ImageNet weights; downloaded once into the torch hub cache).
    """
    import torchvision

    check_choice("name", name, TORCHVISION_MODELS)
    check_int("num_classes", num_classes, minimum=1)
    check_choice("weights", weights, (None, "imagenet"))
    tv_weights = None
    if weights == "imagenet":
        tv_weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        model = torchvision.models.get_model(name, weights=tv_weights)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            f"could not download the ImageNet weights of {name!r}: this machine seems to be offline. "
            f"Run once with a network (e.g. in Colab) so they are cached in {cache}, copy the file "
            f"{tv_weights.url.rsplit('/', 1)[-1] if tv_weights else ''} there by hand, or use weights=None "
            "or tlcourse.models.load_pretrained() (shipped with the package, offline)."
        ) from err
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return model
