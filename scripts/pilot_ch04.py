"""The pilot behind chapter 4's numbers of seeds (run once, before the chapter; never on test).

It trains the chapter's recipes on seeds the chapter does not use (100–103 by default) and
scores them on the reviews of the training pool that neither the few-shot training set nor the
validation set uses, so the test set stays sealed. From the spread over seeds of the paired
differences it reports, the chapter chose how many seeds its claims need.

    HF_HUB_OFFLINE=1 python scripts/pilot_ch04.py            # about 10 minutes on 2 CPU cores
    KS=4 SEEDS=100,101 METHODS=full:1e-4 python scripts/pilot_ch04.py

``METHODS`` entries are ``name:lr`` with name ``full``, ``lpft`` (head initialised from the
tuned probe, then full fine-tuning), ``lora`` or ``random``.
"""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np
import torch

from tlcourse.data.text import TextDataset, few_shot_texts, load_reviews
from tlcourse.models.lora import apply_lora
from tlcourse.models.text import TextClassifier, encode_texts, load_text_encoder
from tlcourse.protocol import tune, validation_split
from tlcourse.text_baselines import C_GRID, fit_probe, fit_tfidf_logreg
from tlcourse.text_finetune import fine_tune_text, predict_texts
from tlcourse.utils import seed_everything

BUDGET = dict(max_steps=100, eval_every=10, patience=2, warmup=10, batch_size=4, max_length=32)  # as in the chapter


def accuracy(pred, labels) -> float:
    return float((np.asarray(pred) == np.asarray(labels)).mean())


def best_of_grid(fit, score):
    """The model of ``C_GRID`` with the best validation score (the chapter's ``tune``)."""
    return tune(lambda params, seed: fit(params["C"]), score, {"C": list(C_GRID)}).best


def unused(pool: TextDataset, train: TextDataset) -> TextDataset:
    """The pool's reviews that ``train`` does not use: the pilot's evaluation set."""
    used = set(train.texts)
    return pool.subset(np.array([i for i, t in enumerate(pool.texts) if t not in used]))


def main() -> None:
    torch.set_num_threads(int(os.environ.get("T", "2")))
    tokenizer, encoder = load_text_encoder()
    reviews = load_reviews(os.environ.get("DOMAIN", "electronics"))
    pool, val = validation_split(reviews.train, per_class=16, seed=0)  # as in the chapter
    texts = pool.texts + val.texts
    cache = dict(zip(texts, encode_texts(tokenizer, encoder, texts, max_length=32).numpy()))

    def feats(ts):
        return np.stack([cache[t] for t in ts])

    def fine_tune(name: str, train: TextDataset, lr: float, seed: int, probe=None):
        seed_everything(seed)
        enc = load_text_encoder(pretrained=False, seed=seed)[1] if name == "random" else copy.deepcopy(encoder)
        model = TextClassifier(enc, 2)
        if name == "lora":
            apply_lora(model, target_modules=("query", "value"), r=8, alpha=16)
        if probe is not None:  # LP-FT: the binary probe as a two-logit head
            w, b = probe.coef_[0], probe.intercept_[0]
            with torch.no_grad():
                model.head.weight.copy_(torch.tensor(np.stack([-w / 2, w / 2]), dtype=torch.float32))
                model.head.bias.copy_(torch.tensor([-b / 2, b / 2], dtype=torch.float32))
        start = time.perf_counter()
        history = fine_tune_text(model, tokenizer, train, val, lr=lr, seed=seed, **BUDGET)
        return model, time.perf_counter() - start, len(history.records)

    rows = []
    for k in [int(k) for k in os.environ.get("KS", "4,16").split(",")]:
        for seed in [int(s) for s in os.environ.get("SEEDS", "100,101,102,103").split(",")]:
            train = few_shot_texts(pool, k, seed=seed)
            held = unused(pool, train)
            row = {"k": k, "seed": seed}
            tfidf = best_of_grid(lambda C, train=train: fit_tfidf_logreg(train.texts, train.labels, C),
                                 lambda m: accuracy(m.predict(val.texts), val.labels))
            row["tfidf"] = accuracy(tfidf.predict(held.texts), held.labels)
            probe = best_of_grid(lambda C, train=train: fit_probe(feats(train.texts), train.labels, C),
                                 lambda m: accuracy(m.predict(feats(val.texts)), val.labels))
            row["probe"] = accuracy(probe.predict(feats(held.texts)), held.labels)
            for spec in os.environ.get("METHODS", "full:1e-4,lpft:1e-4,random:3e-4").split(","):
                name, lr = spec.split(":")
                model, seconds, checks = fine_tune("full" if name == "lpft" else name, train, float(lr), seed,
                                                   probe if name == "lpft" else None)
                pred = predict_texts(model, tokenizer, held.texts, max_length=32).argmax(1).numpy()
                row[spec], row[f"{spec} s"], row[f"{spec} checks"] = accuracy(pred, held.labels), seconds, checks
            print(json.dumps(row), flush=True)
            rows.append(row)
    import pandas as pd

    frame = pd.DataFrame(rows).groupby("k")
    print("mean\n", frame.mean().round(3).T.to_string(), "\nstd over seeds\n", frame.std().round(3).T.to_string())


if __name__ == "__main__":
    main()
