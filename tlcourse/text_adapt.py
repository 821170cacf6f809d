"""Unsupervised domain adaptation of a sentence encoder: unsupervised SimCSE (Gao et al. 2021).

Each unlabelled text is encoded twice with dropout on; the two vectors are a positive pair and
the other texts of the batch are negatives. The loss is InfoNCE over cosine similarities,

    ℓ_i = −log  exp(sim(z_i, z_i⁺)/τ) / Σ_j exp(sim(z_i, z_j⁺)/τ),   τ = 0.05,

Gao et al. 2021, Eq. (1)-(4). Continued on *target-domain* texts, it pulls the encoder's
sentence space towards the target's vocabulary and style without a single label; a linear
probe trained on source labels is then applied to the adapted space (chapter 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from tlcourse.checks import check_int, check_positive
from tlcourse.models.text import mean_pool
from tlcourse.train import Engine, History

__all__ = ["simcse_loss", "train_simcse"]


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE of unsupervised SimCSE: row ``i`` of ``z1`` must pick row ``i`` of ``z2`` (cosine / τ)."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be (N, D) of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if len(z1) < 2:
        raise ValueError("a contrastive batch needs at least two texts")
    check_positive("temperature", temperature)
    sim = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / temperature
    return F.cross_entropy(sim, torch.arange(len(z1), device=z1.device))


def train_simcse(encoder: nn.Module, tokenizer: Any, texts: Sequence[str], *, steps: int = 20, batch_size: int = 16,
                 lr: float = 1e-5, temperature: float = 0.05, max_length: int = 32, seed: int = 0) -> History:
    """Continue training ``encoder`` (in place) with unsupervised SimCSE on unlabelled ``texts``.

    Runs ``steps`` AdamW steps on the engine (one epoch of ``steps`` random batches); the two
    views of a batch differ only by the encoder's dropout masks. Returns the History.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) < 2:
        raise ValueError("texts must be a sequence of at least two unlabelled strings")
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=2)
    check_positive("lr", lr)
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(range(len(texts)), num_samples=steps * batch_size, generator=generator)

    def collate(idx: list[int]) -> dict[str, torch.Tensor]:
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    loader = DataLoader(list(range(len(texts))), batch_size=batch_size, sampler=sampler, collate_fn=collate)
    opt = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=lr)
    engine = Engine({"encoder": encoder}, {"optimizer": opt}, progress=False, desc="simcse")
    net = engine.prepare(encoder)

    def step(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        views = [mean_pool(net(**batch).last_hidden_state, batch["attention_mask"]) for _ in range(2)]
        return {"loss": simcse_loss(*views, temperature=temperature), "batch_size": len(views[0])}

    torch.manual_seed(seed)
    history = engine.run(loader, step, epochs=1)
    encoder.eval()
    return history
