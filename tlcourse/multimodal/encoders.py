"""Small image and text encoders for chapter 7, and frozen sentence embeddings of a pretrained LM.

* :class:`ConvImageEncoder` — a three-stage CNN for 32×32 colour images. It gives either one
  vector per image (``output="pooled"``) or a grid of feature vectors, one per image region
  (``output="tokens"``, with learned 2-D position embeddings), which cross-attention and the
  captioning decoder attend over (Xu et al. 2015, Show, Attend and Tell).
* :class:`TokenTextEncoder` — word embeddings (+ optional transformer layers, Vaswani et al.
  2017) with masked mean pooling; trained from scratch, it only knows the words it has seen.
* :class:`EmbeddingTable` — a frozen lookup table of precomputed vectors (e.g. sentence
  embeddings): ``forward(index)`` returns rows, so a *locked* pretrained tower costs nothing to
  run during training (LiT, Zhai et al. 2022).
* :func:`sentence_embeddings` — mean-pooled sentence vectors of a pretrained transformer
  (all-MiniLM-L6-v2 by default, packaged for offline use), computed once per distinct sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_choice, check_int, check_tensor

__all__ = ["ConvImageEncoder", "TokenTextEncoder", "EmbeddingTable", "sentence_embeddings"]


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvImageEncoder(nn.Module):
    """Image ``(N, 3, H, W)`` in [0, 1] → vector ``(N, out_dim)`` or region tokens ``(N, S, C)``.

    Three 3×3 conv–BN–ReLU stages with widths ``(w, 2w, 4w)`` and 2×2 max-pooling after the first
    two: an ``H×W`` image gives an ``H/4 × W/4`` grid of ``C = 4w``-dimensional region features
    (``S = HW/16`` tokens). The pooled output concatenates the grid's global max (is the pattern
    anywhere?), global mean (how much of it?) and 2×2 means (where is it?) before a linear layer.

    Args:
        width: ``w``, the first stage's number of channels.
        out_dim: size of the pooled vector (``output="pooled"``).
        image_size: side of the (square) input; sets the number of position embeddings.
        output: ``"pooled"`` (default) or ``"tokens"`` — what :meth:`forward` returns.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 16,
        out_dim: int = 128,
        image_size: int = 32,
        output: str = "pooled",
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        check_int("width", width, minimum=1)
        check_int("out_dim", out_dim, minimum=1)
        check_int("image_size", image_size, minimum=8)
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.output = check_choice("output", output, ("pooled", "tokens"))
        self.in_channels = in_channels
        self.image_size = image_size
        self.token_dim = 4 * width
        self.out_dim = out_dim
        self.features = nn.Sequential(
            _conv_block(in_channels, width),
            nn.MaxPool2d(2),
            _conv_block(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_block(2 * width, 4 * width),
        )
        self.num_tokens = (image_size // 4) ** 2
        self.position = nn.Parameter(0.02 * torch.randn(self.num_tokens, self.token_dim))
        self.pool = nn.Linear(6 * self.token_dim, out_dim)
        self.to(memory_format=torch.channels_last)  # faster convolutions on CPUs and GPUs

    def _check(self, images: torch.Tensor) -> None:
        check_tensor("images", images, ndim=4, dtype="float")
        expected = (self.in_channels, self.image_size, self.image_size)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, expected))}), got {tuple(images.shape)}")

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H/4, W/4)`` region features."""
        self._check(images)
        return self.features(images.contiguous(memory_format=torch.channels_last))

    def tokens(self, images: torch.Tensor, pool: int = 1, summary: bool = False) -> torch.Tensor:
        """``(N, S, C)`` region tokens with learned position embeddings added.

        ``pool > 1`` averages ``pool × pool`` neighbouring regions (and their position
        embeddings) first: ``S`` shrinks by ``pool²``, which makes attention over them cheaper.
        ``summary=True`` prepends one token, the grid's global max (which patterns occur
        anywhere in the image), a shortcut for attention to find what is there.
        """
        check_int("pool", pool, minimum=1)
        side = self.image_size // 4
        if side % pool:
            raise ValueError(f"pool must divide the grid side {side}, got {pool}")
        fmap = self.feature_map(images)
        pos = self.position.t().reshape(1, self.token_dim, side, side)
        tokens = []
        if summary:
            tokens.append(fmap.amax(dim=(2, 3)).unsqueeze(1))
        if pool > 1:
            fmap, pos = F.avg_pool2d(fmap, pool), F.avg_pool2d(pos, pool)
        tokens.append((fmap + pos).flatten(2).transpose(1, 2))
        return torch.cat(tokens, dim=1) if summary else tokens[0]

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, out_dim)`` one vector per image: linear map of [max, mean, 2×2 means] of the grid."""
        fmap = self.feature_map(images)
        parts = [fmap.amax(dim=(2, 3)), fmap.mean(dim=(2, 3)), F.adaptive_avg_pool2d(fmap, 2).flatten(1)]
        return self.pool(torch.cat(parts, dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokens(images) if self.output == "tokens" else self.pooled(images)


class TokenTextEncoder(nn.Module):
    """Token ids ``(N, L)`` → sentence vector ``(N, out_dim)`` or token vectors ``(N, L, dim)``.

    Word embeddings (padding id ``pad_id`` ignored) plus learned position embeddings, then
    ``num_layers`` transformer encoder layers (0 = a bag of words), then the mean over real tokens
    and a linear map (``output="pooled"``). With ``output="tokens"`` the per-token vectors are
    returned; use ``ids == pad_id`` as the key padding mask.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 64,
        out_dim: int = 128,
        num_layers: int = 0,
        nhead: int = 4,
        max_len: int = 32,
        pad_id: int = 0,
        output: str = "pooled",
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("dim", dim, minimum=1)
        check_int("out_dim", out_dim, minimum=1)
        check_int("num_layers", num_layers, minimum=0)
        check_int("max_len", max_len, minimum=1)
        self.output = check_choice("output", output, ("pooled", "tokens"))
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be in [0, vocab_size), got {pad_id}")
        self.vocab_size, self.pad_id, self.max_len = vocab_size, pad_id, max_len
        self.token_dim, self.out_dim = dim, out_dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.position = nn.Parameter(0.02 * torch.randn(max_len, dim)) if num_layers else None
        layer = nn.TransformerEncoderLayer(dim, nhead, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False) if num_layers else None
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim))

    def _check(self, ids: torch.Tensor) -> None:
        check_tensor("ids", ids, ndim=2, dtype="int")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"ids has {ids.shape[1]} tokens, more than max_len={self.max_len}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            found = f"{int(ids.min())}..{int(ids.max())}"
            raise ValueError(f"ids must hold token ids in [0, {self.vocab_size}), found {found}")

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """``(N, L, dim)`` contextual token vectors (padding positions are meaningless)."""
        self._check(ids)
        x = self.embed(ids)
        if self.layers is not None:
            x = self.layers(x + self.position[: ids.shape[1]], src_key_padding_mask=ids == self.pad_id)
        return x

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """``(N, out_dim)``: mean of the real tokens' vectors, then a linear map."""
        x = self.tokens(ids)
        mask = (ids != self.pad_id).unsqueeze(-1).to(x.dtype)
        return self.proj((x * mask).sum(1) / mask.sum(1).clamp(min=1.0))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids) if self.output == "tokens" else self.pooled(ids)


class EmbeddingTable(nn.Module):
    """A frozen table of precomputed vectors: ``forward(index)`` → ``table[index]``.

    Stands in for a *locked* tower whose outputs were computed once (e.g. sentence embeddings of
    every distinct caption): training then only updates what sits on top of it.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        check_tensor("table", table, ndim=2, dtype="float")
        self.register_buffer("table", table.detach().clone())
        self.out_dim = table.shape[1]

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        check_tensor("index", index, ndim=1, dtype="int")
        if index.numel() and (index.min() < 0 or index.max() >= len(self.table)):
            found = f"{int(index.min())}..{int(index.max())}"
            raise ValueError(f"index must hold row numbers in [0, {len(self.table)}), found {found}")
        return self.table[index]


def sentence_embeddings(
    texts: Sequence[str],
    *,
    model: str = "all-MiniLM-L6-v2",
    encoder: Any = None,
    batch_size: int = 128,
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen sentence embeddings of the *distinct* texts and, for every text, its row.

    Returns ``(table, index)``: ``table`` is ``(U, H)`` for the ``U`` distinct strings (first-seen
    order), ``index`` is ``(len(texts),)`` with ``table[index[i]]`` the embedding of ``texts[i]``.
    Captions repeat, so this saves much of the cost of a transformer forward pass per caption.

    The encoder is ``(tokenizer, model)`` if given, else loaded with
    :func:`tlcourse.models.text.load_text_encoder` (``all-MiniLM-L6-v2`` works offline); vectors
    are mean-pooled over real tokens and, with ``normalize``, scaled to unit length as
    Sentence-BERT does.
    """
    from tlcourse.models.text import encode_texts, load_text_encoder

    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is empty: expected at least one text")
    rows: dict[str, int] = {}
    index = torch.tensor([rows.setdefault(t, len(rows)) for t in texts], dtype=torch.long)
    tokenizer, lm = encoder if encoder is not None else load_text_encoder(model)
    table = encode_texts(tokenizer, lm, list(rows), batch_size=batch_size, normalize=normalize, device=device)
    return table, index
