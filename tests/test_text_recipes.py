"""Chapter 4's recipes: step-budget fine-tuning, order-preserving prediction, baselines, SimCSE."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from tlcourse.data.text import TextDataset
from tlcourse.models.text import TextClassifier, load_text_encoder, packaged_model_path
from tlcourse.text_adapt import simcse_loss, train_simcse
from tlcourse.text_baselines import fit_probe, fit_tfidf_logreg
from tlcourse.text_finetune import fine_tune_text, linear_warmup_decay, predict_texts, step_loader, steps_taken

TEXTS = ["great phone", "awful battery, returned it", "love it", "terrible service and cold soup",
         "superb", "broken on arrival, a waste of money", "works perfectly", "rude waiter"]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    return tok, BertModel(cfg)


def test_step_loader_yields_exactly_the_requested_steps(tiny):
    tok, _ = tiny
    loader = step_loader(TextDataset(TEXTS, LABELS), tok, steps=5, batch_size=3, seed=1)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    assert all(len(y) == 3 for _, y in batches)


def test_predict_texts_keeps_the_order_of_the_texts(tiny):
    tok, enc = tiny
    model = TextClassifier(enc, 2)
    together = predict_texts(model, tok, TEXTS, batch_size=3)
    one_by_one = torch.cat([predict_texts(model, tok, [t]) for t in TEXTS])
    assert torch.allclose(together, one_by_one, atol=1e-5)


def test_fine_tune_text_respects_the_step_budget_and_schedule(tiny):
    tok, enc = tiny
    data = TextDataset(TEXTS, LABELS)
    model = TextClassifier(enc, 2)
    hist = fine_tune_text(model, tok, data, data, lr=1e-3, max_steps=20, eval_every=5, patience=10, warmup=5,
                          batch_size=4, seed=0)
    assert steps_taken(hist, 5) == 20 and "val_accuracy" in hist.records[0]
    assert hist.records[-1]["lr"] < hist.records[0]["lr"] or hist.records[0]["lr"] > 0
    with pytest.raises(ValueError, match="multiple of eval_every"):
        fine_tune_text(model, tok, data, data, lr=1e-3, max_steps=12, eval_every=5)


def test_baselines_fit_and_predict():
    clf = fit_tfidf_logreg(TEXTS, LABELS, C=10.0)
    assert (clf.predict(TEXTS) == torch.tensor(LABELS).numpy()).mean() == 1.0
    X = torch.randn(8, 4) + torch.tensor(LABELS)[:, None] * 3
    assert fit_probe(X, LABELS, C=1.0).predict(X.numpy()).shape == (8,)


def test_simcse_loss_matches_its_definition_and_training_runs(tiny):
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    sim = torch.nn.functional.cosine_similarity(z1[:, None], z2[None], dim=-1) / 0.05
    manual = -(sim.diag() - sim.logsumexp(1)).mean()
    assert torch.allclose(simcse_loss(z1, z2), manual, atol=1e-5)
    tok, enc = tiny
    hist = train_simcse(enc, tok, TEXTS, steps=2, batch_size=4, lr=1e-3)
    assert len(hist.records) == 1 and hist.records[0]["loss"] > 0


def test_linear_warmup_decay_rises_then_falls_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_warmup_decay(warmup=4, total=10)(opt)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[4] == 1.0 and lrs[:5] == sorted(lrs[:5]) and lrs[4:] == sorted(lrs[4:], reverse=True)
    assert opt.param_groups[0]["lr"] == 0.0


def test_packaged_minilm_in_hugging_face_classifier_trains_through_fit():
    """The Hugging Face path of chapter 4: fit unwraps ``.logits``."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding
    from transformers.utils import logging as hf_logging

    tok, _ = load_text_encoder()
    hf_logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(packaged_model_path(), num_labels=2)
    feats = [{**tok(t, truncation=True, max_length=16), "labels": y} for t, y in zip(TEXTS, LABELS)]
    loader = torch.utils.data.DataLoader(feats, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
    data = TextDataset(TEXTS, LABELS)
    hist = fine_tune_text(model, tok, data, data, lr=1e-4, max_steps=2, eval_every=2, patience=1, warmup=1,
                          train_loader=loader)
    assert len(hist.records) == 1
    assert predict_texts(model, tok, TEXTS).shape == (8, 2)
