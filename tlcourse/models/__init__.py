"""Backbones, heads and pretrained weights."""

from tlcourse.models.pretrained import (
    PRETRAINED,
    TORCHVISION_MODELS,
    load_pretrained,
    model_card,
    torchvision_backbone,
    weights_path,
)
from tlcourse.models.resnet import BLOCK_NAMES, Backbone, BasicBlock, SmallResNet, replace_head

__all__ = [
    "BLOCK_NAMES",
    "PRETRAINED",
    "TORCHVISION_MODELS",
    "Backbone",
    "BasicBlock",
    "SmallResNet",
    "load_pretrained",
    "model_card",
    "replace_head",
    "torchvision_backbone",
    "weights_path",
]
