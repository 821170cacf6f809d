"""Tokenizers for chapter 7's text models trained from scratch.

* :class:`WordTokenizer` — a word-level vocabulary built from the training captions. Ids 0–3 are
  ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; a word never seen in training becomes ``<unk>``.
  Used by :mod:`tlcourse.multimodal.captioning` and the dual encoder of Section 7.3.
* :func:`subword_ids` — ids from a pretrained model's subword tokenizer (e.g. MiniLM's
  WordPiece). A tower trained from scratch on these ids reads text exactly as the pretrained
  model does, so a comparison between the two differs in the weights only, not in the tokenizer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from tlcourse.checks import check_int, check_tensor

__all__ = ["WordTokenizer", "subword_ids"]


class WordTokenizer:
    """Lower-case word vocabulary built from training text.

    Ids 0–3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; every word seen at least ``min_count``
    times gets its own id (sorted by frequency, then alphabetically: deterministic). A word never
    seen in training becomes ``<unk>`` — the reason a text model trained from scratch cannot
    read a synonym it has never met.
    """

    PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
    SPECIALS = (PAD, BOS, EOS, UNK)

    def __init__(self, words: Sequence[str]) -> None:
        words = [w for w in words if w not in self.SPECIALS]
        if len(set(words)) != len(words):
            raise ValueError("words must not repeat")
        self.itos: list[str] = list(self.SPECIALS) + list(words)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    @staticmethod
    def split(text: str) -> list[str]:
        """Lower-case words (letters, digits, apostrophes, hyphens); punctuation is dropped."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return re.findall(r"[a-z0-9'-]+", text.lower())

    @classmethod
    def fit(cls, texts: Sequence[str], min_count: int = 1) -> WordTokenizer:
        """Build the vocabulary of ``texts``."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise ValueError("texts must be a non-empty sequence of strings")
        check_int("min_count", min_count, minimum=1)
        counts = Counter(w for t in texts for w in cls.split(t))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(words)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        add_special: bool = True,
        max_len: int | None = None,
    ) -> torch.Tensor:
        """Token ids ``(N, L)`` padded with ``pad_id``; with ``add_special``: ``<bos> ... <eos>``.

        ``max_len`` (optional) truncates; ``L`` is otherwise the longest sequence.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or len(texts) == 0:
            raise ValueError("texts must be a non-empty sequence of strings")
        seqs = []
        for t in texts:
            ids = [self.stoi.get(w, self.unk_id) for w in self.split(t)]
            if add_special:
                ids = [self.bos_id, *ids, self.eos_id]
            if max_len is not None:
                ids = ids[: check_int("max_len", max_len, minimum=1)]
            seqs.append(ids)
        width = max(1, max(len(s) for s in seqs))
        out = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor | Sequence[int], skip_special: bool = True) -> str:
        """Words of one sequence; stops at the first ``<eos>``, drops ``<bos>``/``<pad>``."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"ids must be one sequence (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        words = []
        for i in ids:
            if not 0 <= i < len(self.itos):
                raise ValueError(f"ids must hold token ids in [0, {len(self.itos)}), found {i}")
            if i == self.eos_id:
                break
            if skip_special and i in (self.pad_id, self.bos_id):
                continue
            words.append(self.itos[i])
        return " ".join(words)

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        check_tensor("ids", ids, ndim=2, dtype="int")
        return [self.decode(row) for row in ids]

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={len(self)})"


def subword_ids(tokenizer: Any, texts: Sequence[str], max_len: int = 32) -> torch.Tensor:
    """``(N, L)`` ids of a Hugging Face tokenizer, without ``[CLS]``/``[SEP]``, padded with its pad id.

    A word outside the tokenizer's vocabulary is split into known pieces ("crimson" →
    ``crimson``, "lavender" → ``lavender``, a rare word → several ``##`` pieces), so nothing maps
    to ``[UNK]`` by construction; pieces that no training caption contains keep the random
    embedding they were initialised with in a tower trained from scratch. Use
    ``len(tokenizer)`` as the vocabulary size and ``tokenizer.pad_token_id`` as the padding id.
    """
    if not callable(tokenizer) or getattr(tokenizer, "pad_token_id", None) is None:
        raise TypeError("tokenizer must be a Hugging Face tokenizer with a pad token (e.g. MiniLM's)")
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError("texts must be a non-empty sequence of strings")
    max_len = check_int("max_len", max_len, minimum=1)
    enc = tokenizer(list(texts), add_special_tokens=False, padding=True, truncation=True, max_length=max_len,
                    return_tensors="pt")
    return enc["input_ids"].long()
