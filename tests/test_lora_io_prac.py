"""save_lora / load_lora: adapters + config + head, peft's layout, identical logits (issue 22)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tlcourse.models.lora import apply_lora, load_lora, lora_state_dict, save_lora


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.query, self.value, self.other = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)
        self.class_names = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.value(self.query(x)) + self.other(x)))


def _trained() -> Tiny:
    model = apply_lora(Tiny(), ("query", "value"), r=2, alpha=4.0)
    model.class_names = ["a", "b", "c"]
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))  # as if trained: adapters and head moved
    return model


def test_save_load_gives_identical_logits(tmp_path):
    model, x = _trained(), torch.randn(5, 6)
    save_lora(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["modules_to_save"] == ["head"]
    fresh = load_lora(Tiny(), tmp_path)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    assert fresh.class_names == ["a", "b", "c"]
    # the old way (adapter tensors only, strict=False) silently kept a random head
    partial = apply_lora(Tiny(), ("query", "value"), r=2, alpha=4.0)
    partial.load_state_dict(lora_state_dict(model), strict=False)
    assert not torch.allclose(partial(x), model(x))


def test_load_into_a_model_that_already_has_adapters(tmp_path):
    model = _trained()
    save_lora(model, tmp_path)
    target = apply_lora(Tiny(), ("query", "value"), r=2, alpha=4.0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(load_lora(target, tmp_path)(x), model(x), rtol=0, atol=0)


def test_peft_reads_the_folder(tmp_path):
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file

    model = _trained()
    save_lora(model, tmp_path)
    config = peft.LoraConfig(r=2, lora_alpha=4.0, target_modules=["query", "value"], modules_to_save=["head"])
    wrapped = peft.get_peft_model(Tiny(), config)
    result = peft.set_peft_model_state_dict(wrapped, load_file(str(tmp_path / "adapter_model.safetensors")))
    assert not result.unexpected_keys
    x = torch.randn(4, 6)
    torch.testing.assert_close(wrapped(x), model(x))


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_lora(Tiny(), tmp_path)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(Tiny(), tmp_path / "missing")
    save_lora(_trained(), tmp_path)
    with pytest.raises(ValueError, match="does not have"):
        load_lora(nn.Sequential(nn.Linear(6, 3)), tmp_path)
