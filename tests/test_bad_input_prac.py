"""Bad input a practitioner meets with their own data (issue 22): each row must raise a clear error.

Each row is (label, callable, expected exception, a regex the message must match), like
``tests/test_bad_input.py``. The dedicated tests below cover warnings and former silent results.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from tlcourse.data import ArrayDataset, TextDataset, few_shot
from tlcourse.models import SmallResNet
from tlcourse.train import evaluate, fit

X = torch.rand(8, 1, 28, 28)
Y = torch.arange(8) % 2


def net(c: int = 2) -> SmallResNet:
    return SmallResNet(c, widths=(4, 8, 8))


class Named(Dataset):
    """Images with string labels, as a hand-written Dataset returns them."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return X[i], ["cat", "dog"][i % 2]


ONE_HOT = TensorDataset(X, nn.functional.one_hot(Y, 2).float())
FLOATS = TensorDataset(X, Y.float())

CASES = [
    # labels in fit / evaluate
    ("fit one-hot labels", lambda: fit(net(), ONE_HOT, epochs=1), ValueError,
     r"train_data labels look one-hot.*argmax"),
    ("fit float labels", lambda: fit(net(), FLOATS, epochs=1), TypeError, r"train_data labels must be integer.*long"),
    ("fit string labels", lambda: fit(net(), Named(), epochs=1), TypeError,
     r"train_data labels must be a tensor of class"),
    ("evaluate one-hot labels", lambda: evaluate(net(), ONE_HOT), ValueError, r"data labels look one-hot"),
    ("evaluate float labels", lambda: evaluate(net(), FLOATS), TypeError, r"data labels must be integer"),
    ("evaluate string labels", lambda: evaluate(net(), Named()), TypeError, r"data labels must be a tensor of class"),
    # labels in the datasets
    ("ArrayDataset one-hot labels", lambda: ArrayDataset(X, nn.functional.one_hot(Y, 2)), ValueError,
     r"labels look one-hot"),
    ("ArrayDataset float labels", lambda: ArrayDataset(X, Y.float()), TypeError, r"labels must be integer class"),
    ("TextDataset string labels without classes", lambda: TextDataset(["a", "b"], ["x", "y"]), TypeError,
     r"labels are class names.*classes="),
    ("TextDataset unknown class name", lambda: TextDataset(["a", "b"], ["x", "z"], classes=["x", "y"]), ValueError,
     r"not in classes.*'z'"),
    ("TextDataset float labels", lambda: TextDataset(["a", "b"], [0.0, 1.0]), TypeError, r"labels must be integer"),
    ("TextDataset empty", lambda: TextDataset([], []), ValueError, r"texts is empty"),
    # the backbone's input contract
    ("0-255 float images", lambda: net()(X * 255), ValueError, r"\[0, 1\].*0-255 pixel values: divide by 255"),
    ("ImageNet-normalised images", lambda: net()((X.expand(-1, 3, -1, -1) - 0.485) / 0.229), ValueError,
     r"\[0, 1\].*look normalised.*normalises them itself"),
    ("2x2 images", lambda: net()(torch.rand(4, 3, 2, 2)), ValueError, r"at least 8x8 pixels.*got 2x2"),
    ("fit on 0-255 images", lambda: fit(net(), TensorDataset(X * 255, Y), epochs=1), ValueError, r"0-255"),
    ("preprocess an unknown type", lambda: net().preprocess("photo.png"), TypeError, r"image must be a PIL"),
    ("few_shot not a dataset", lambda: few_shot([1, 2], 1), TypeError, r"dataset must be a map-style"),
]


@pytest.mark.parametrize("label,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(label, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_input_checks_can_be_turned_off(monkeypatch):
    model = net().eval()
    model.backbone.check_inputs = False
    assert model(X * 255).shape == (8, 2)
    monkeypatch.setenv("TLCOURSE_CHECK_INPUTS", "0")
    assert net().eval()(torch.rand(2, 3, 2, 2)).shape == (2, 2)


def test_preprocessing_is_the_model_card_contract():
    from PIL import Image

    from tlcourse.models import model_card, preprocessing

    card = model_card()["input"]
    assert card["range"] == [0.0, 1.0] and card["input_size"] == [28, 28] and card["min_size"] == [8, 8]
    prep = preprocessing("glyphs-resnet")
    x = prep(Image.new("L", (64, 50), 255))
    assert x.shape == (3, 28, 28) and torch.allclose(x, torch.ones_like(x))
    assert "[0, 1]" in repr(prep) and "inside the model" in repr(prep)


def test_text_dataset_takes_class_names():
    data = TextDataset(["hi", "bye", "hello"], ["greet", "leave", "greet"], classes=["greet", "leave"])
    assert data.labels.tolist() == [0, 1, 0] and data.classes == ["greet", "leave"]


def test_fit_with_a_soft_target_loss_reports_real_accuracy():
    """Old main: one-hot labels trained with accuracy 0.0 reported; a custom loss now scores vs argmax."""
    def soft_ce(logits, target):
        return -(target * logits.log_softmax(1)).sum(1).mean()

    data = TensorDataset(X, nn.functional.one_hot(Y, 2).float())
    history = fit(net(), data, epochs=2, loss_fn=soft_ce, progress=False, seed=0)
    assert history.last["train_accuracy"] > 0


def test_few_shot_takes_any_labelled_dataset(tmp_path):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    for c in ("cats", "dogs"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
    folder = ImageFolder(str(tmp_path))
    picked = few_shot(folder, 2)
    assert len(picked) == 4 and sorted(folder.targets[i] for i in picked.indices) == [0, 0, 1, 1]
    assert len(few_shot(TensorDataset(X, Y), 1)) == 2
