import pytest
import torch
from torch import nn

from tlcourse.models import SmallResNet, load_pretrained, model_card, replace_head, torchvision_backbone, weights_path


def test_small_resnet_shapes_and_grey_input():
    model = SmallResNet(7)
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 7)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 7)  # grey images are repeated to 3 channels
    assert model.backbone(torch.rand(2, 3, 28, 28)).shape == (2, model.feature_dim)
    maps = model.backbone.forward_maps(torch.rand(1, 3, 28, 28))
    assert [m.shape[-1] for m in maps.values()] == [14, 14, 7, 4]


@pytest.mark.parametrize("bad", [torch.rand(2, 2, 28, 28), torch.rand(3, 28, 28),
                                 torch.zeros(2, 3, 28, 28, dtype=torch.long)])
def test_small_resnet_rejects_bad_input(bad):
    with pytest.raises((ValueError, TypeError), match="x must"):
        SmallResNet(3)(bad)


def test_small_resnet_rejects_bad_config():
    with pytest.raises(ValueError, match="num_classes"):
        SmallResNet(0)
    with pytest.raises(ValueError, match="widths"):
        SmallResNet(3, widths=(8, 16))


def test_replace_head_keeps_features():
    model = SmallResNet(5)
    before = model.backbone.stem[0].weight.clone()
    replace_head(model, 2)
    assert model.head.out_features == 2 and torch.equal(model.backbone.stem[0].weight, before)
    with pytest.raises(ValueError, match="head"):
        replace_head(nn.Sequential(nn.Linear(2, 2)), 3)


def test_shipped_backbone_loads_and_matches_its_card():
    card = model_card()
    assert weights_path().stat().st_size == card["file_bytes"]
    assert card["source_test_accuracy"] > 0.8
    model = load_pretrained(num_classes=None)
    assert model.head.out_features == card["source_classes"]
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    ten = load_pretrained(10, seed=0)
    assert ten.head.out_features == 10
    assert torch.equal(ten.backbone.layer3.conv2.weight, model.backbone.layer3.conv2.weight)
    assert torch.equal(load_pretrained(10, seed=0).head.weight, ten.head.weight)


def test_shipped_backbone_recognises_its_source_task():
    from tlcourse.data.glyphs import load_glyphs
    from tlcourse.train import evaluate

    acc = evaluate(load_pretrained(num_classes=None), load_glyphs(10, seed=123))["accuracy"]
    assert acc > 0.8


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="name must be one of"):
        load_pretrained(name="imagenet-resnet")


def test_torchvision_backbone_offline_paths(monkeypatch):
    model = torchvision_backbone("resnet18", 4, weights=None)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 4)
    with pytest.raises(ValueError, match="name must be one of"):
        torchvision_backbone("resnet1000", 4)

    import urllib.error

    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline, raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-tlcourse-test")
    with pytest.raises(RuntimeError, match="offline"):
        torchvision_backbone("resnet18", 4, weights="imagenet")
