"""A word-level tokenizer: the vocabulary of a captioner (or any small text model) trained from scratch.

Ids 0–3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; a word never seen in training becomes
``<unk>``. Used by :mod:`tlcourse.multimodal.captioning` and by chapter 7's text models.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch

from tlcourse.checks import check_int, check_tensor

__all__ = ["WordTokenizer"]


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
