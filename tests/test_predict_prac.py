"""predict in dataset order for every loader, on raw images and strings; class names (issue 22)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlcourse.checkpoint import load_weights, save_weights
from tlcourse.data import ArrayDataset, TextDataset, make_text_loader
from tlcourse.models import SmallResNet, load_pretrained, replace_head
from tlcourse.train import fit, predict, predict_names

WORDS = ["zero", "one", "two"]


class WordTokenizer:
    """A whitespace tokenizer with the call signature of a Hugging Face tokenizer."""

    vocab = {w: i + 1 for i, w in enumerate(WORDS + ["filler"])}

    def __call__(self, texts, padding=False, truncation=False, max_length=None, return_tensors=None):
        ids = [[self.vocab[w] for w in t.split()][: max_length or None] for t in texts]
        if return_tensors is None:
            return {"input_ids": ids}
        width = max(len(i) for i in ids)
        return {"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])}


class FirstWordModel(nn.Module):
    """Logits = one-hot of the first word: a perfect classifier of the toy texts."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.class_names = None

    def forward(self, input_ids, attention_mask=None):
        return self.scale * nn.functional.one_hot(input_ids[:, 0] - 1, len(WORDS) + 1)[:, : len(WORDS)].float()


def _texts(n: int = 60) -> TextDataset:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    texts = [" ".join([WORDS[c]] + ["filler"] * int(rng.integers(0, 20))) for c in labels]
    return TextDataset(texts, torch.as_tensor(labels), classes=WORDS)


def test_predict_length_grouped_loader_returns_dataset_order():
    """Old main returned the rows in length order (0.17-style accuracy); now dataset order."""
    data = _texts()
    loader = make_text_loader(data, WordTokenizer(), batch_size=8, shuffle=False)
    assert [i for b in loader.batch_sampler for i in b] != list(range(len(data)))  # the loader does reorder
    pred = predict(FirstWordModel(), loader).argmax(1)
    assert (pred == data.labels).float().mean().item() == 1.0


def test_predict_shuffled_loaders_return_dataset_order():
    data = _texts()
    for loader in (make_text_loader(data, WordTokenizer(), batch_size=8, shuffle=True),
                   make_text_loader(data, WordTokenizer(), batch_size=8, shuffle=True, group_by_length=False)):
        assert (predict(FirstWordModel(), loader).argmax(1) == data.labels).all()
    x = torch.randn(30, 4)
    net = nn.Linear(4, 3)
    shuffled = DataLoader(TensorDataset(x, torch.zeros(30, dtype=torch.long)), batch_size=7, shuffle=True)
    torch.testing.assert_close(predict(net, shuffled), net(x).detach())


def test_predict_strings_and_names():
    data = _texts(12)
    model = FirstWordModel()
    model.tokenizer = WordTokenizer()
    assert (predict(model, data.texts).argmax(1) == data.labels).all()
    assert predict(model, "two filler").argmax(1).tolist() == [2]
    assert predict_names(model, data.texts, class_names=WORDS) == [WORDS[i] for i in data.labels.tolist()]
    with pytest.raises(ValueError, match="class_names"):
        predict_names(model, data.texts)
    with pytest.raises(TypeError, match="tokenizer"):
        predict(FirstWordModel(), ["one"])


def test_predict_tensor_batch_and_pil_images():
    from PIL import Image

    model = SmallResNet(3, widths=(4, 8, 8), class_names=["a", "b", "c"]).eval()
    x = torch.rand(5, 3, 28, 28)
    torch.testing.assert_close(predict(model, x), model(x).detach())
    arrays = [(np.random.default_rng(i).random((40, 30, 3)) * 255).astype(np.uint8) for i in range(3)]
    images = [Image.fromarray(a) for a in arrays]
    batch = model.preprocess.batch(images)
    assert batch.shape == (3, 3, 28, 28) and 0 <= batch.min() and batch.max() <= 1
    torch.testing.assert_close(predict(model, images), model(batch).detach())
    assert predict(model, images[0]).shape == (1, 3)
    assert predict_names(model, images) == [model.class_names[i] for i in model(batch).argmax(1).tolist()]


def test_class_names_travel_with_models_and_checkpoints(tmp_path):
    model = load_pretrained(class_names=["cat", "dog"], seed=0)
    assert model.num_classes == 2 and model.class_names == ["cat", "dog"]
    assert load_pretrained(num_classes=None).class_names[:3] == ["0", "1", "2"]
    save_weights(tmp_path / "m.safetensors", model)
    fresh = load_pretrained(2)
    assert fresh.class_names is None
    load_weights(tmp_path / "m.safetensors", fresh)
    assert fresh.class_names == ["cat", "dog"]
    replace_head(fresh, 3)
    assert fresh.class_names is None
    with pytest.raises(ValueError, match="class_names"):
        SmallResNet(2, class_names=["a"])


def test_fit_takes_class_names_from_the_data():
    data = ArrayDataset(torch.rand(8, 1, 28, 28), torch.arange(8) % 2, classes=["no", "yes"])
    model = SmallResNet(2, widths=(4, 8, 8))
    fit(model, data, epochs=1, progress=False)
    assert model.class_names == ["no", "yes"]
    assert set(predict_names(model, data)) <= {"no", "yes"}
