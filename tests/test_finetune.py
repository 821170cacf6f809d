import pytest
import torch

from tlcourse.finetune import (
    STAGES,
    L2SPLoss,
    count_parameters,
    discriminative_param_groups,
    extract_features,
    freeze,
    gradual_unfreezing,
    trainable_stages,
    unfreeze,
)
from tlcourse.models import SmallResNet
from tlcourse.train import fit


def model():
    return SmallResNet(3, widths=(8, 16, 16))


def test_freeze_really_freezes_weights_and_batchnorm_statistics(tiny_images):
    m = model()
    trainable_stages(m, 1)  # linear probe
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    fit(m, tiny_images, epochs=2, lr=1e-2, batch_size=16)
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed although the backbone is frozen"
    assert count_parameters(m, trainable_only=True) == sum(p.numel() for p in m.head.parameters())


def test_frozen_batchnorm_stays_in_eval_after_train_call():
    m = model()
    m.backbone.check_inputs = False  # inputs outside [0, 1] on purpose: large batch statistics
    freeze(m, ["backbone"])
    m.train()
    stats = m.backbone.stem[1].running_mean.clone()
    m(torch.rand(4, 1, 28, 28) * 5)
    assert torch.equal(m.backbone.stem[1].running_mean, stats)
    unfreeze(m, ["backbone"])
    m.train()
    m(torch.rand(4, 1, 28, 28) * 5)
    assert not torch.equal(m.backbone.stem[1].running_mean, stats)


def test_trainable_stages_counts():
    m = model()
    counts = [count_parameters(trainable_stages(m, k), trainable_only=True) for k in range(1, len(STAGES) + 1)]
    assert counts == sorted(counts) and counts[-1] == count_parameters(m)
    with pytest.raises(ValueError, match="train_top"):
        trainable_stages(m, 6)
    with pytest.raises(ValueError, match="no submodule"):
        freeze(m, ["backbone.layer9"])


def test_discriminative_groups_carry_their_rates():
    m = model()
    groups = discriminative_param_groups(m, lr=1e-2, decay=0.5)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["head"] == pytest.approx(1e-2)
    assert rates["backbone.layer3"] == pytest.approx(5e-3)
    assert rates["backbone.stem"] == pytest.approx(1e-2 * 0.5**4)
    opt = torch.optim.SGD(groups)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == count_parameters(m)
    with pytest.raises(ValueError, match="decay"):
        discriminative_param_groups(m, lr=1e-2, decay=2.0)
    with pytest.raises(ValueError, match="lr"):
        discriminative_param_groups(m, lr=0.0)


def test_gradual_unfreezing_ends_fully_trainable(tiny_images):
    m = model()
    history = gradual_unfreezing(m, tiny_images, epochs_per_stage=1, lr=1e-2, batch_size=32)
    assert [r["stages"] for r in history.records] == [1, 2, 3, 4, 5]
    assert count_parameters(m, trainable_only=True) == count_parameters(m)


def test_l2sp_penalty_zero_at_start_and_grows():
    m = model()
    loss = L2SPLoss(m, alpha=1.0, beta=0.0)
    assert loss.penalty().item() == 0.0
    with torch.no_grad():
        m.backbone.stem[0].weight.add_(0.1)
    expected = 0.5 * (0.1**2) * m.backbone.stem[0].weight.numel()
    assert loss.penalty().item() == pytest.approx(expected, rel=1e-4)
    head_only = L2SPLoss(m, alpha=0.0, beta=2.0)
    expected = sum(p.pow(2).sum().item() for p in m.head.parameters())
    assert head_only.penalty().item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        L2SPLoss(m, alpha=-1.0)


def test_extract_features_shapes(tiny_images):
    m = model()
    feats, labels = extract_features(m.backbone, tiny_images, batch_size=10)
    assert feats.shape == (len(tiny_images), m.feature_dim)
    assert torch.equal(labels, tiny_images.labels)
    assert m.training  # mode restored
