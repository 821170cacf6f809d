"""Text data and encoders: the review corpus, collate, the packaged MiniLM, TextClassifier, bad input."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn

from tlcourse.data.text import (
    REVIEW_DOMAINS,
    SENTIMENT_CLASSES,
    LengthGroupedBatchSampler,
    TextDataset,
    corpus_path,
    few_shot_texts,
    load_reviews,
    make_text_collate,
    make_text_loader,
)
from tlcourse.models.text import TextClassifier, encode_texts, load_text_encoder, mean_pool


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder()  # the packaged all-MiniLM-L6-v2, offline


# --- corpus -----------------------------------------------------------------------------------


def test_corpus_is_balanced_large_enough_and_split_stratified():
    rows = [json.loads(line) for line in corpus_path().read_text(encoding="utf-8").splitlines()]
    assert {r["domain"] for r in rows} == set(REVIEW_DOMAINS)
    for domain in REVIEW_DOMAINS:
        mine = [r for r in rows if r["domain"] == domain]
        assert len(mine) >= 320
        for split in ("train", "test"):
            labels = [r["label"] for r in mine if r["split"] == split]
            assert labels.count(0) == labels.count(1) > 0
        n_test = sum(r["split"] == "test" for r in mine)
        assert 0.2 <= n_test / len(mine) <= 0.3
    normalised = [re.sub(r"\W+", " ", r["text"].lower()).strip() for r in rows]
    assert len(set(normalised)) == len(rows), "duplicate texts"
    assert all(set(r) == {"text", "label", "domain", "split"} and r["label"] in (0, 1) for r in rows)
    assert (corpus_path().parent / "DATA_CARD.md").is_file()


def test_load_reviews_domains_and_splits():
    both = load_reviews()
    assert both.train.classes == SENTIMENT_CLASSES
    elec = load_reviews("electronics", "train")
    rest = load_reviews("restaurants", "train")
    assert len(elec) + len(rest) == len(both.train)
    assert set(elec.domains) == {"electronics"}
    assert not set(both.train.texts) & set(both.test.texts)
    text, label = elec[0]
    assert isinstance(text, str) and label.dtype == torch.long and label.ndim == 0


def test_few_shot_texts_is_stratified_and_seeded():
    train = load_reviews("restaurants", "train")
    a = few_shot_texts(train, 5, seed=3)
    assert len(a) == 10 and torch.bincount(a.labels).tolist() == [5, 5]
    assert a.texts == few_shot_texts(train, 5, seed=3).texts
    assert a.texts != few_shot_texts(train, 5, seed=4).texts
    assert set(a.texts) <= set(train.texts)
    with pytest.raises(ValueError, match="k must be <="):
        few_shot_texts(train, 10_000)
    with pytest.raises(ValueError, match="k must be"):
        few_shot_texts(train, 0)
    with pytest.raises(TypeError, match="dataset must be"):
        few_shot_texts(["a text"], 1)  # type: ignore[arg-type]


def test_text_dataset_add_subset_and_bad_input():
    ds = TextDataset(["good", "bad", "fine"], [1, 0, 1], SENTIMENT_CLASSES, ["a", "a", "b"])
    both = ds + ds.subset([2])
    assert len(both) == 4 and both.texts[-1] == "fine" and both.domains[-1] == "b"
    with pytest.raises(ValueError, match="empty"):
        TextDataset(["ok", "   "], [0, 1])
    with pytest.raises(ValueError, match="labels must hold class indices in"):
        TextDataset(["ok", "no"], [0, 2], SENTIMENT_CLASSES)
    with pytest.raises(ValueError, match=">= 0"):
        TextDataset(["ok"], [-1])
    with pytest.raises(ValueError, match="same length"):
        TextDataset(["ok", "no"], [0])
    with pytest.raises(TypeError, match="texts must be a sequence"):
        TextDataset("just one string", [0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="texts must hold strings"):
        TextDataset(["ok", 3], [0, 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="domain must be one of"):
        load_reviews("books")
    with pytest.raises(ValueError, match="split must be one of"):
        load_reviews(split="validation")


# --- tokenization and collate ------------------------------------------------------------------


def test_collate_pads_truncates_and_feeds_fit(minilm):
    tokenizer, _ = minilm
    collate = make_text_collate(tokenizer, max_length=8)
    batch = [("Short one.", torch.tensor(1)),
             ("A much longer review that will certainly be truncated here.", torch.tensor(0))]
    inputs, labels = collate(batch)
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert inputs["input_ids"].shape == (2, 8) == inputs["attention_mask"].shape
    assert inputs["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]  # [CLS] short one . [SEP] + padding
    assert inputs["input_ids"][1, -1].item() == tokenizer.sep_token_id
    assert labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="batch is empty"):
        collate([])
    with pytest.raises(ValueError, match="max_length"):
        make_text_collate(tokenizer, max_length=1)
    with pytest.raises(TypeError, match="tokenizer"):
        make_text_collate("bert", 8)  # type: ignore[arg-type]


def test_length_grouped_sampler_covers_every_index_and_reshuffles():
    lengths = [5, 40, 7, 33, 12, 60, 9, 21, 18, 3]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=3, shuffle=True, seed=0)
    epochs = [list(sampler) for _ in range(3)]
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(10)) and len(batches) == len(sampler) == 4
    assert epochs[0] != epochs[1]
    ordered = list(LengthGroupedBatchSampler(lengths, batch_size=3, shuffle=False))
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths)
    with pytest.raises(ValueError, match="lengths is empty"):
        LengthGroupedBatchSampler([], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedBatchSampler([3], batch_size=0)
    with pytest.raises(ValueError, match="jitter"):
        LengthGroupedBatchSampler([3], batch_size=1, jitter=1.5)


def test_text_loader_pads_less_and_keeps_every_example(minilm):
    tokenizer, _ = minilm
    data = load_reviews("electronics", "test")
    grouped = make_text_loader(data, tokenizer, batch_size=16, shuffle=True, seed=0)
    plain = make_text_loader(data, tokenizer, batch_size=16, shuffle=True, seed=0, group_by_length=False)
    padded = {name: sum(x["input_ids"].numel() for x, _ in loader) for name, loader in (("g", grouped), ("p", plain))}
    assert padded["g"] < 0.8 * padded["p"]
    labels = torch.cat([y for _, y in grouped])
    assert len(labels) == len(data) and labels.sum() == data.labels.sum()
    with pytest.raises(TypeError, match="dataset must be a TextDataset"):
        make_text_loader(["text"], tokenizer)  # type: ignore[arg-type]


# --- encoders ----------------------------------------------------------------------------------


def test_packaged_minilm_loads_offline(minilm):
    tokenizer, encoder = minilm
    assert encoder.config.hidden_size == 384 and encoder.config.num_hidden_layers == 6
    assert 22_000_000 < sum(p.numel() for p in encoder.parameters()) < 23_500_000
    # WordPiece: lower-cased, rare words split into pieces marked "##", [CLS]/[SEP] added.
    assert tokenizer.tokenize("Not bad at all.") == ["not", "bad", "at", "all", "."]
    pieces = tokenizer.tokenize("The earbuds keep disconnecting.")
    assert pieces[:2] == ["the", "ear"] and all(p.startswith("##") for p in pieces[2:4])
    ids = tokenizer("Not bad at all.")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and len(ids) == 7


def test_random_init_has_same_architecture_but_different_weights(minilm):
    _, pretrained = minilm
    _, random = load_text_encoder(pretrained=False, seed=0)
    assert type(random) is type(pretrained) and random.config.hidden_size == pretrained.config.hidden_size
    assert sum(p.numel() for p in random.parameters()) == sum(p.numel() for p in pretrained.parameters())
    w0 = pretrained.embeddings.word_embeddings.weight
    assert not torch.allclose(random.embeddings.word_embeddings.weight, w0)
    _, again = load_text_encoder(pretrained=False, seed=0)
    query = again.encoder.layer[0].attention.self.query.weight
    assert torch.equal(query, random.encoder.layer[0].attention.self.query.weight)


def test_unknown_model_offline_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="not available.*offline.*all-MiniLM-L6-v2"):
        load_text_encoder("no-such-org/definitely-not-a-model")
    with pytest.raises(TypeError, match="name must be"):
        load_text_encoder("")
    with pytest.raises(TypeError, match="pretrained must be a bool"):
        load_text_encoder(pretrained="yes")  # type: ignore[arg-type]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        mean_pool(hidden, torch.ones(1, 2))
    with pytest.raises(ValueError, match="hidden must have 3"):
        mean_pool(hidden[0], mask)


def test_encode_texts_matches_sentence_transformers_recipe(minilm):
    tokenizer, encoder = minilm
    texts = ["The battery died after a day.", "Lovely food, friendly staff, great evening out!", "Meh."]
    emb = encode_texts(tokenizer, encoder, texts, batch_size=2, normalize=True)
    assert emb.shape == (3, 384)
    # Reference: one batch, padded together, mean pooled by hand, L2-normalised.
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(emb, ref, rtol=1e-4, atol=1e-4)
    # Sentence-level semantics survive: the two restaurant reviews are closer than a gadget one.
    texts = ["Delicious pasta and kind waiters.", "The soup was tasty and the staff lovely.",
             "My laptop charger broke."]
    e = encode_texts(tokenizer, encoder, texts, normalize=True)
    assert e[0] @ e[1] > e[0] @ e[2]
    with pytest.raises(ValueError, match="texts is empty"):
        encode_texts(tokenizer, encoder, [])
    with pytest.raises(ValueError, match=r"texts\[1\] must be a non-empty string"):
        encode_texts(tokenizer, encoder, ["fine", ""])
    with pytest.raises(TypeError, match="texts must be a sequence"):
        encode_texts(tokenizer, encoder, "a single string")


def test_text_classifier_logits_and_fit_step(minilm):
    from tlcourse.train import evaluate, fit

    tokenizer, encoder = minilm
    model = TextClassifier(copy.deepcopy(encoder), num_classes=2)  # do not train the shared fixture
    data = few_shot_texts(load_reviews("electronics", "train"), 2, seed=0)
    collate = make_text_collate(tokenizer, max_length=16)
    inputs, labels = collate([data[i] for i in range(len(data))])
    model.eval()
    assert model(**inputs).shape == (4, 2)
    before = {n: p.detach().clone() for n, p in model.head.named_parameters()}
    history = fit(model, data, epochs=1, lr=1e-3, batch_size=4, collate_fn=collate, progress=False, seed=0)
    assert len(history) == 1 and not torch.equal(model.head.weight, before["weight"])
    assert 0.0 <= evaluate(model, data, collate_fn=collate)["accuracy"] <= 1.0
    cls = TextClassifier(encoder, num_classes=3, pooling="cls").eval()
    assert cls(**inputs).shape == (4, 3)


def test_text_classifier_bad_input(minilm):
    _, encoder = minilm
    with pytest.raises(ValueError, match="num_classes"):
        TextClassifier(encoder, num_classes=1)
    with pytest.raises(ValueError, match="pooling must be one of"):
        TextClassifier(encoder, 2, pooling="max")
    with pytest.raises(TypeError, match="encoder must be"):
        TextClassifier("bert", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden_size"):
        TextClassifier(nn.Linear(3, 3), 2)
    model = TextClassifier(encoder, 2)
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        model(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="input_ids has no tokens"):
        model(torch.zeros(2, 0, dtype=torch.long))


def test_fit_rejects_label_out_of_range(minilm):
    from tlcourse.train import fit

    tokenizer, encoder = minilm
    data = TextDataset(["good", "bad", "odd"], [0, 1, 2])
    with pytest.raises(ValueError, match="labels must be in"):
        fit(TextClassifier(encoder, 2), data, epochs=1, collate_fn=make_text_collate(tokenizer, 8), progress=False)
