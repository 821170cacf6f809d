"""The two shipped backbones say plainly what their source classes are; the letters one has no digits."""

from __future__ import annotations

import torch

from tlcourse.models import PRETRAINED, load_pretrained, model_card


def test_glyphs_card_says_its_classes_include_the_digits():
    card = model_card("glyphs-resnet")
    assert card["source_classes"] == 53 and card["source_class_names"].startswith("0123456789")
    assert "INCLUDE the digits 0-9" in card["digit_classes"] and "MNIST-M" in card["source_task"]


def test_letters_backbone_has_no_digit_class_and_loads():
    assert "letters-resnet" in PRETRAINED
    card = model_card("letters-resnet")
    names = card["source_class_names"]
    assert card["source_classes"] == len(names) == 43 and not set(names) & set("0123456789")
    assert "no digit classes" in card["digit_classes"]
    assert card["regenerate"].endswith("--letters-only")
    model = load_pretrained(10, name="letters-resnet", seed=0)
    assert model.head.out_features == 10
    glyphs = load_pretrained(10, name="glyphs-resnet", seed=0)
    assert not torch.equal(model.backbone.stem[0].weight, glyphs.backbone.stem[0].weight)
