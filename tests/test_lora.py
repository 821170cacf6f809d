"""LoRA (tlcourse.models.lora): exactness at init, merging, freezing, peft equivalence, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlcourse.models.lora import (
    LoRALinear,
    apply_lora,
    copy_lora_to_peft,
    count_parameters,
    lora_state_dict,
    merge_lora,
)


def tiny_bert(seed: int = 0) -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return BertModel(config).eval()


class TinyClassifier(nn.Module):
    """A stand-in for TextClassifier: encoder + mean pooling + head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.encoder = tiny_bert(seed)
        self.head = nn.Linear(16, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.mean(1))


def randomize_B(model: nn.Module, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            with torch.no_grad():
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=gen) * 0.5)


IDS = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(0))
MASK = torch.ones(4, 7, dtype=torch.long)
MASK[0, 5:] = 0


def test_lora_linear_matches_formula_and_is_zero_at_init():
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    x = torch.randn(5, 10)
    reference = base(x).detach()
    lora = LoRALinear(base, r=2, alpha=4)
    assert torch.equal(lora(x), reference)  # B = 0 → exactly the base layer
    with torch.no_grad():
        lora.lora_B.normal_()
    expected = x @ base.weight.T + base.bias + (4 / 2) * x @ lora.lora_A.T @ lora.lora_B.T
    torch.testing.assert_close(lora(x), expected)
    torch.testing.assert_close(lora.delta_weight(), 2.0 * lora.lora_B @ lora.lora_A)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert lora.lora_A.requires_grad and lora.lora_B.requires_grad


def test_apply_lora_init_equals_base_model_and_counts():
    model = TinyClassifier()
    before = model(IDS, MASK).detach()
    total = count_parameters(model)
    apply_lora(model, target_modules=("query", "value"), r=4, alpha=8)
    torch.testing.assert_close(model(IDS, MASK), before, rtol=0, atol=0)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 4 and all(n.endswith(("query", "value")) for n in wrapped)
    # trainable = 2 layers × 2 projections × r (16 + 16) + head (16·3 + 3)
    assert count_parameters(model, trainable_only=True) == 2 * 2 * 4 * 32 + 16 * 3 + 3
    assert count_parameters(model) == total + 2 * 2 * 4 * 32
    assert set(lora_state_dict(model)) == {f"{n}.{p}" for n in wrapped for p in ("lora_A", "lora_B")}


def test_merge_gives_same_outputs_and_plain_linear_layers():
    model = TinyClassifier()
    apply_lora(model, r=4, alpha=8)
    randomize_B(model)
    out = model(IDS, MASK).detach()
    adapters = lora_state_dict(model)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert isinstance(model.encoder.encoder.layer[0].attention.self.query, nn.Linear)
    torch.testing.assert_close(model(IDS, MASK), out, rtol=1e-5, atol=1e-5)
    assert len(adapters) == 8
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(model)


def test_frozen_parts_stay_frozen_after_a_training_step():
    model = TinyClassifier()
    apply_lora(model, r=2, alpha=4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith("head") or "lora_" in n for n in trainable)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # step 1 moves B (its gradient is non-zero), step 2 then moves A too
        loss = nn.functional.cross_entropy(model(IDS, MASK), torch.tensor([0, 1, 2, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None and torch.equal(p, frozen[n]), n
    changed = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed) and "head.weight" in changed


def test_trainable_modules_can_be_empty_or_named():
    model = TinyClassifier()
    apply_lora(model, r=2, alpha=2, trainable_modules=())
    assert not model.head.weight.requires_grad
    with pytest.raises(ValueError, match="trainable_modules"):
        apply_lora(TinyClassifier(), trainable_modules=("classifier",))


def test_forward_matches_peft_for_the_same_weights():
    peft = pytest.importorskip("peft")
    ours = tiny_bert()
    theirs = peft.get_peft_model(
        tiny_bert(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0)
    ).eval()
    apply_lora(ours, target_modules=("query", "value"), r=4, alpha=8, trainable_modules=())
    randomize_B(ours)
    ours.eval()
    assert copy_lora_to_peft(ours, theirs) == 8
    a = ours(input_ids=IDS, attention_mask=MASK).last_hidden_state
    b = theirs(input_ids=IDS, attention_mask=MASK).last_hidden_state
    assert not torch.allclose(a, tiny_bert()(input_ids=IDS, attention_mask=MASK).last_hidden_state)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Same number of trainable adapter parameters as peft reports.
    trainable_peft = sum(p.numel() for n, p in theirs.named_parameters() if p.requires_grad)
    assert count_parameters(ours, trainable_only=True) == trainable_peft


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"r": 0}, ValueError, "r must be"),
        ({"r": -2}, ValueError, "r must be"),
        ({"r": 2.5}, TypeError, "r must be an int"),
        ({"alpha": 0}, ValueError, "alpha"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"dropout": 1.5}, ValueError, "dropout"),
        ({"target_modules": ("nonexistent",)}, ValueError, "no nn.Linear layer matches"),
        ({"target_modules": ()}, ValueError, "target_modules is empty"),
    ],
)
def test_apply_lora_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        apply_lora(TinyClassifier(), **kwargs)


def test_lora_linear_bad_input():
    with pytest.raises(TypeError, match="base must be"):
        LoRALinear(nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="r must be <="):
        LoRALinear(nn.Linear(4, 3), r=8)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(nn.Linear(4, 3), r=2, dropout=1.0)
    with pytest.raises(TypeError, match="model must be"):
        apply_lora("bert")  # type: ignore[arg-type]


def test_apply_twice_is_refused():
    model = apply_lora(TinyClassifier(), r=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model, r=2)


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(8, 8), r=2, alpha=2, dropout=0.5)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(3, 8)
    lora.eval()
    torch.testing.assert_close(lora(x), lora.merged()(x))
    lora.train()
    assert not torch.allclose(lora(x), lora.merged()(x))


def test_copy_lora_to_peft_refuses_a_peft_model_with_other_targets():
    peft = pytest.importorskip("peft")
    ours = tiny_bert()
    apply_lora(ours, target_modules=("query", "value"), r=4, alpha=8, trainable_modules=())
    theirs = peft.get_peft_model(tiny_bert(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query"]))
    with pytest.raises(ValueError, match="value.lora_A.default.weight: expected exactly one"):
        copy_lora_to_peft(ours, theirs)
