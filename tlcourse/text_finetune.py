"""Fine-tuning a text classifier on a fixed step budget, the recipe of chapter 4.

Every network of the chapter's comparison (full fine-tuning, LoRA, the same architecture from
random initialisation, a Hugging Face ``AutoModelForSequenceClassification``) trains with
:func:`fine_tune_text`: AdamW with bias correction (Mosbach et al. 2021 show that dropping it
is a main source of few-sample instability), a linear warm-up then a linear decay to zero
(``transformers.get_linear_schedule_with_warmup``; Devlin et al. 2019), at most ``max_steps``
optimizer steps, and early stopping on validation accuracy checked every ``eval_every`` steps
(the best weights are restored). Only the learning rate differs between methods, and it is
chosen on validation (:func:`tlcourse.protocol.tune`).

Training runs on :func:`tlcourse.train.fit`, which accepts any model whose output is a tensor
of logits *or* an object with ``.logits`` (a Hugging Face output): ``fit`` unwraps it.
:func:`predict_texts` returns logits in the order of the texts given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from tlcourse.checks import check_int, check_positive
from tlcourse.data.text import TextDataset, make_text_collate, make_text_loader
from tlcourse.train import History, fit
from tlcourse.train.classification import forward_logits

__all__ = ["step_loader", "fine_tune_text", "predict_texts", "linear_warmup_decay", "steps_taken"]


def step_loader(dataset: TextDataset, tokenizer: Any, *, steps: int, batch_size: int = 4, max_length: int = 32,
                seed: int = 0) -> DataLoader:
    """A loader that yields exactly ``steps`` shuffled batches per pass (an "epoch" of ``steps``).

    With 8 training texts and batches of 4, an epoch of the dataset is 2 steps; evaluating every
    10 steps needs passes of 10 batches, drawn as consecutive random permutations of the data.
    """
    if not isinstance(dataset, TextDataset) or len(dataset) == 0:
        raise ValueError("dataset must be a non-empty TextDataset")
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=False, num_samples=steps * batch_size, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=generator,
                      collate_fn=make_text_collate(tokenizer, max_length))


def linear_warmup_decay(warmup: int, total: int) -> Any:
    """A factory ``optimizer → scheduler``: linear warm-up for ``warmup`` steps, linear decay to 0 at ``total``."""
    from transformers import get_linear_schedule_with_warmup

    check_int("warmup", warmup, minimum=0)
    check_int("total", total, minimum=1)
    if warmup >= total:
        raise ValueError(f"warmup must be smaller than total ({total}), got {warmup}")
    return lambda opt: get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)


def fine_tune_text(
    model: nn.Module,
    tokenizer: Any,
    train: TextDataset,
    val: TextDataset | Any,
    *,
    lr: float,
    max_steps: int = 100,
    eval_every: int = 10,
    patience: int = 3,
    warmup: int = 10,
    batch_size: int = 4,
    max_length: int = 32,
    weight_decay: float = 0.01,
    seed: int = 0,
    train_loader: Any = None,
) -> History:
    """Train ``model`` (logits, or an output with ``.logits``) for at most ``max_steps`` AdamW steps.

    Validation accuracy is measured every ``eval_every`` steps; training stops after
    ``patience`` checks without improvement and the best weights are restored. ``val`` is a
    :class:`TextDataset` or a ready loader; ``train_loader`` replaces the default
    :func:`step_loader` (e.g. one with a ``DataCollatorWithPadding``; it must yield
    ``eval_every`` batches per pass). Returns the :class:`~tlcourse.train.History` (one record
    per check).
    """
    check_positive("lr", lr)
    check_int("max_steps", max_steps, minimum=1)
    check_int("eval_every", eval_every, minimum=1)
    if max_steps % eval_every:
        raise ValueError(f"max_steps ({max_steps}) must be a multiple of eval_every ({eval_every})")
    loader = train_loader or step_loader(train, tokenizer, steps=eval_every, batch_size=batch_size,
                                         max_length=max_length, seed=seed)
    if len(loader) != eval_every:
        raise ValueError(f"train_loader must yield eval_every={eval_every} batches per pass, got {len(loader)}")
    val_loader = make_text_loader(val, tokenizer, batch_size=64, max_length=max_length, shuffle=False) \
        if isinstance(val, TextDataset) else val

    def adamw(params: Any) -> torch.optim.Optimizer:
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)

    return fit(model, loader, epochs=max_steps // eval_every, optimizer=lambda ps: adamw(list(ps)),
               scheduler=linear_warmup_decay(warmup, max_steps), scheduler_interval="step",
               val_data=val_loader, early_stopping=patience, monitor="val_accuracy", seed=seed, progress=False)


@torch.no_grad()
def predict_texts(model: nn.Module, tokenizer: Any, texts: Sequence[str], *, max_length: int = 32,
                  batch_size: int = 64) -> torch.Tensor:
    """Logits ``(N, C)`` of ``model`` for ``texts``, **in the order given** (batched by length)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError("texts must be a non-empty sequence of strings")
    check_int("batch_size", batch_size, minimum=1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: torch.Tensor | None = None
    try:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            inputs = {k: enc[k].to(device) for k in ("input_ids", "attention_mask")}
            logits = forward_logits(model, inputs).float().cpu()
            if out is None:
                out = torch.empty(len(texts), logits.shape[1])
            out[idx] = logits
    finally:
        model.train(was_training)
    assert out is not None
    return out


def steps_taken(history: History, eval_every: int) -> int:
    """Optimizer steps a :func:`fine_tune_text` run took (``eval_every`` per record)."""
    return eval_every * len(history.records)
