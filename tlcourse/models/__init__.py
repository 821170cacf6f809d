"""Backbones, heads and pretrained weights."""

from tlcourse.models.lora import LoRALinear, apply_lora, load_lora, lora_state_dict, merge_lora, save_lora
from tlcourse.models.pretrained import (
    PRETRAINED,
    TORCHVISION_MODELS,
    load_pretrained,
    model_card,
    torchvision_backbone,
    weights_path,
)
from tlcourse.models.resnet import BLOCK_NAMES, Backbone, BasicBlock, SmallResNet, replace_head
from tlcourse.models.text import TextClassifier, encode_texts, load_text_encoder, mean_pool
from tlcourse.models.transforms import ImagePreprocess, preprocessing

__all__ = [
    "ImagePreprocess",
    "preprocessing",
    "LoRALinear",
    "TextClassifier",
    "apply_lora",
    "encode_texts",
    "load_text_encoder",
    "lora_state_dict",
    "save_lora",
    "load_lora",
    "mean_pool",
    "merge_lora",
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
