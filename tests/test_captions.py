"""Tests of the procedural image–caption data (tlcourse.data.captions)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tlcourse.data.captions import (
    COLOURS,
    DEFAULT_HOLDOUT,
    SHAPES,
    SYNONYMS,
    UNSEEN_SYNONYMS,
    UNSEEN_TEMPLATES,
    CaptionDataset,
    class_prompts,
    combo_index,
    combo_names,
    make_captions,
    make_fusion_task,
    parse_caption,
    render_scenes,
    sample_scenes,
)
from tlcourse.multimodal.captioning import WordTokenizer


@pytest.fixture(scope="module")
def split():
    return make_captions(600, 300, seed=1)


def test_shapes_ranges_and_types(split):
    train, test = split
    assert isinstance(train, CaptionDataset)
    assert train.images.shape == (600, 3, 32, 32) and test.images.shape == (300, 3, 32, 32)
    assert train.images.dtype == torch.float32
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    assert len(train.captions) == 600 and all(isinstance(c, str) and c for c in train.captions)
    image, caption = train[5]
    assert image.shape == (3, 32, 32) and caption == train.captions[5]
    assert set(train.attributes) == {"shape", "colour", "size", "position", "count"}
    assert int(train.attributes["count"].min()) >= 1 and int(train.attributes["count"].max()) <= 3


def test_same_seed_same_data_other_seed_other_data(split):
    again = make_captions(600, 300, seed=1)
    assert torch.equal(again.train.images, split.train.images)
    assert again.train.captions == split.train.captions
    assert torch.equal(again.test.images, split.test.images)
    other = make_captions(600, 300, seed=2)
    assert not torch.equal(other.train.images, split.train.images)
    assert other.train.captions != split.train.captions


def test_held_out_combinations_never_in_train(split):
    train, test = split
    pairs = set(zip(train.attributes["shape"].tolist(), train.attributes["colour"].tolist()))
    held = {(SHAPES.index(s), COLOURS.index(c)) for s, c in DEFAULT_HOLDOUT}
    assert not pairs & held
    assert len(pairs) == len(SHAPES) * len(COLOURS) - len(held)  # every other pair does occur
    assert not bool(train.novel.any())
    test_pairs = list(zip(test.attributes["shape"].tolist(), test.attributes["colour"].tolist()))
    assert [p in held for p in test_pairs] == test.novel.tolist()
    assert int(test.novel.sum()) == 150  # novel_fraction=0.5
    # ... and no caption of the training split names a held-out pair.
    for caption in train.captions:
        parsed = parse_caption(caption)
        assert (parsed["shape"], parsed["colour"]) not in DEFAULT_HOLDOUT


def test_captions_describe_their_images(split):
    train = split.train
    for i, caption in enumerate(train.captions):
        parsed = parse_caption(caption)
        assert parsed["shape"] == SHAPES[int(train.attributes["shape"][i])]
        assert parsed["colour"] == COLOURS[int(train.attributes["colour"][i])]
        assert parsed["count"] == int(train.attributes["count"][i])
    assert len(set(train.captions)) > 0.8 * len(train.captions)  # a varied grammar


def test_labels_and_class_names():
    assert len(combo_names()) == 25 and combo_names()[combo_index(0, 1)] == "green circle"
    names = combo_names()
    prompts = class_prompts("train")
    assert len(prompts) == 25 and prompts[combo_index(2, 0)] == "a red triangle"
    assert all(n.split()[0] in p for n, p in zip(names, prompts))


def test_unseen_phrasings_never_occur_in_training_captions():
    big = make_captions(3000, 1, seed=0, novel_fraction=0.0)
    train_words = {w for c in big.train.captions for w in WordTokenizer.split(c)}
    for attr in ("shape", "colour"):
        for words in UNSEEN_SYNONYMS[attr].values():
            for phrase in words:
                assert not set(WordTokenizer.split(phrase)) <= train_words, phrase
                assert phrase not in {w for v in SYNONYMS[attr].values() for w in v}
    for template in UNSEEN_TEMPLATES:
        prompt = template.format(a="a", colour="red", shape="circle")
        assert prompt not in big.train.captions
    unseen = class_prompts("unseen", synonym=1)
    assert len(unseen) == 25 and len(set(unseen)) == 25


def test_parse_caption_reads_synonyms_and_counts():
    assert parse_caption("a picture of two tiny scarlet discs on the left") == {
        "shape": "circle", "colour": "red", "size": "small", "position": "left", "count": 2,
    }
    assert parse_caption("i can see a crimson disk here")["colour"] == "red"
    assert parse_caption("at the top there is a big violet star")["count"] == 1
    parsed = parse_caption("three boxes")
    assert parsed["shape"] == "square" and parsed["colour"] is None and parsed["count"] == 3
    assert parse_caption("")["shape"] is None
    with pytest.raises(TypeError, match="text"):
        parse_caption(3)


def test_generation_is_fast():
    make_captions(200, 10, seed=0)  # warm the photo cache
    start = time.perf_counter()
    make_captions(2000, 500, seed=0)
    assert time.perf_counter() - start < 2.0


def test_render_backgrounds_and_grayscale():
    rng = np.random.default_rng(0)
    scenes = sample_scenes(20, rng)
    for background in ("photo", "plain", "noise"):
        img = render_scenes(scenes, np.random.default_rng(0), background=background)
        assert img.shape == (20, 3, 32, 32) and img.dtype == np.float32
    grey = render_scenes(scenes, np.random.default_rng(0), grayscale=True)
    assert np.allclose(grey[:, 0], grey[:, 1]) and np.allclose(grey[:, 1], grey[:, 2])
    # objects change the picture: drawing on a plain background leaves pixels that are not grey.
    plain = render_scenes(scenes, np.random.default_rng(0), background="plain")
    assert (np.abs(plain - 0.5) > 0.2).any(axis=(1, 2, 3)).all()


def test_fusion_task_needs_both_modalities():
    fs = make_fusion_task(300, 50, 100, seed=0)
    again = make_fusion_task(300, 50, 100, seed=0)
    assert torch.equal(fs.train.images, again.train.images) and fs.train.texts == again.train.texts
    assert fs.train.images.shape == (300, 3, 32, 32) and len(fs.val) == 50 and len(fs.test) == 100
    imgs = fs.train.images
    assert torch.allclose(imgs[:, 0], imgs[:, 1]) and torch.allclose(imgs[:, 1], imgs[:, 2])  # no colour
    assert int(fs.train.labels.min()) >= 0 and int(fs.train.labels.max()) < 25
    for text, label in zip(fs.train.texts, fs.train.labels.tolist()):
        parsed = parse_caption(text)
        assert parsed["shape"] is None  # the text never names the shape ...
        assert parsed["colour"] == COLOURS[label % len(COLOURS)]  # ... but always the colour
    (image, text), label = fs.train[0]
    assert image.shape == (3, 32, 32) and isinstance(text, str) and label.ndim == 0


def test_subset(split):
    sub = split.test.subset(split.test.novel)
    assert len(sub) == 150 and bool(sub.novel.all())
    sub = split.train.subset([0, 2])
    assert sub.captions == [split.train.captions[0], split.train.captions[2]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_train": 0}, ValueError, "n_train"),
        ({"n_train": 2.5}, TypeError, "n_train"),
        ({"seed": -1}, ValueError, "seed"),
        ({"holdout": [("hexagon", "red")]}, ValueError, "shape"),
        ({"holdout": [("circle", "pink")]}, ValueError, "colour"),
        ({"holdout": [("circle", c) for c in COLOURS]}, ValueError, "every shape"),
        ({"holdout": ["circle"]}, ValueError, "pairs"),
        ({"novel_fraction": 1.5}, ValueError, "novel_fraction"),
        ({"holdout": [], "novel_fraction": 0.5}, ValueError, "held-out"),
        ({"background": "sky"}, ValueError, "background"),
        ({"image_size": 8}, ValueError, "size"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"n_train": 10, "n_test": 4, **kwargs}
    with pytest.raises(error, match=match):
        make_captions(**args)


def test_bad_prompt_arguments():
    with pytest.raises(ValueError, match="phrasing"):
        class_prompts("weird")
    with pytest.raises(ValueError, match="template"):
        class_prompts("train", template="a {colour} thing")
    with pytest.raises(ValueError, match="n_val"):
        make_fusion_task(10, 0, 10)
