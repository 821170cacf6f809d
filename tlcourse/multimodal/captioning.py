"""Image captioning: an encoder–decoder with cross-attention, greedy and beam decoding.

A caption model estimates :math:`p(w_1..w_T \\mid x) = \\prod_t p(w_t \\mid w_{<t}, x)`, book
Eq. (7.5). The image encoder turns :math:`x` into a grid of region vectors (the *memory*); a
small transformer decoder (Vaswani et al. 2017) reads the words so far with causal
self-attention and looks at the regions with **cross-attention** — the attention-over-regions
idea of Show, Attend and Tell (Xu et al. 2015). Training is teacher forcing: cross-entropy of
every next word given the true previous ones.

This is what the source document's ``BertForConditionalGeneration`` could not do: that class
does not exist in ``transformers``, and BERT as it is — an encoder with no cross-attention —
has no input for an image. Captioning needs a decoder that attends to image features; BERT's
*weights* can still initialise one, once cross-attention layers are added and the model is
trained as a causal decoder (what ``transformers.VisionEncoderDecoderModel`` does with a BERT
checkpoint as its decoder, following Rothe et al. 2020).

* :class:`~tlcourse.multimodal.tokenizer.WordTokenizer` — the word-level vocabulary (its own module).
* :class:`Captioner` — encoder → memory → :class:`torch.nn.TransformerDecoder` → next-word logits.
* :func:`greedy_decode`, :func:`beam_search` — inference (beam width 1 is greedy decoding).
* :func:`fit_captioner`, :func:`generate_captions`, :func:`attribute_accuracy` (and the
  per-caption :func:`attribute_matches`); BLEU and CIDEr-D live in
  :mod:`~tlcourse.multimodal.caption_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_int, check_positive, check_tensor
from tlcourse.distributed import all_reduce_sum, world_size
from tlcourse.multimodal.tokenizer import WordTokenizer
from tlcourse.utils import get_device

if TYPE_CHECKING:
    from tlcourse.train import History

__all__ = [
    "Captioner",
    "CaptionLoss",
    "fit_captioner",
    "greedy_decode",
    "beam_search",
    "generate_captions",
    "attribute_accuracy",
    "attribute_matches",
]


class Captioner(nn.Module):
    """Image encoder + transformer decoder with cross-attention, book Eq. (7.5).

    Args:
        vocab_size: number of token ids (``len(tokenizer)``).
        image_encoder: module with ``tokens(images) -> (N, S, feature_dim)`` region features
            (e.g. :class:`~tlcourse.multimodal.encoders.ConvImageEncoder`); ``None`` means the
            inputs *are* precomputed region features ``(N, S, feature_dim)`` — a frozen encoder
            whose outputs were computed once.
        feature_dim: size of a region feature.
        d_model, nhead, num_layers, dim_feedforward, dropout: decoder sizes.
        max_len: longest token sequence (with ``<bos>``/``<eos>``).
        pool, summary: passed to ``image_encoder.tokens(images, pool=pool, summary=summary)``:
            attend over fewer, pooled regions (cheaper), plus a global summary token.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        image_encoder: nn.Module | None = None,
        feature_dim: int = 64,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        max_len: int = 24,
        pad_id: int = WordTokenizer.pad_id,
        unk_id: int = WordTokenizer.unk_id,
        pool: int = 1,
        summary: bool = False,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=4)
        check_int("feature_dim", feature_dim, minimum=1)
        check_int("max_len", max_len, minimum=2)
        if image_encoder is not None and not callable(getattr(image_encoder, "tokens", None)):
            raise TypeError("image_encoder must have a tokens(images) -> (N, S, C) method, or be None")
        self.image_encoder = image_encoder
        self.pool = check_int("pool", pool, minimum=1)
        self.summary = bool(summary)
        self.vocab_size, self.feature_dim, self.max_len = vocab_size, feature_dim, max_len
        self.pad_id, self.unk_id = pad_id, unk_id
        self.memory_proj = nn.Sequential(nn.Linear(feature_dim, d_model), nn.LayerNorm(d_model))
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.position = nn.Parameter(0.02 * torch.randn(max_len, d_model))
        layer = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout=dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size))

    def memory(self, images: torch.Tensor) -> torch.Tensor:
        """Region features → decoder memory ``(N, S, d_model)``."""
        if self.image_encoder is None:
            feats = images
        elif self.pool == 1 and not self.summary:
            feats = self.image_encoder.tokens(images)
        else:
            feats = self.image_encoder.tokens(images, pool=self.pool, summary=self.summary)
        check_tensor("region features", feats, ndim=3, dtype="float")
        if feats.shape[-1] != self.feature_dim:
            raise ValueError(f"region features must have size feature_dim={self.feature_dim}, got {feats.shape[-1]}")
        return self.memory_proj(feats)

    def decode(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(N, L, V)`` for every prefix of ``tokens`` ``(N, L)``."""
        check_tensor("tokens", tokens, ndim=2, dtype="int")
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"tokens has {length} positions, more than max_len={self.max_len}")
        x = self.embed(tokens) + self.position[:length]
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)  # True = hidden
        h = self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True, tgt_key_padding_mask=tokens == self.pad_id)
        return self.out(h)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits ``(N, L, V)``; position ``t`` predicts ``tokens[:, t + 1]``."""
        if len(images) != len(tokens):
            raise ValueError(f"images and tokens must have the same length, got {len(images)} and {len(tokens)}")
        return self.decode(self.memory(images), tokens)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, word_dropout: float = 0.0,
             reduction: str = "mean") -> torch.Tensor:
        """Mean next-word cross-entropy over real (non-padding) target positions.

        ``word_dropout`` replaces that fraction of the *input* words (never ``<bos>`` or padding)
        by ``<unk>`` (Bowman et al. 2016): the decoder must then look at the image instead of
        guessing the next word from the previous ones alone. ``reduction="sum"`` returns the
        sum over those positions instead of the mean.
        """
        inputs = tokens[:, :-1]
        if word_dropout > 0:
            drop = torch.rand(inputs.shape, device=inputs.device) < word_dropout
            drop &= (inputs != self.pad_id) & (torch.arange(inputs.shape[1], device=inputs.device) > 0)
            inputs = inputs.masked_fill(drop, self.unk_id)
        logits = self(images, inputs)
        targets = tokens[:, 1:].reshape(-1)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, ignore_index=self.pad_id,
                               reduction=reduction)


class CaptionLoss(nn.Module):
    """``forward(images, tokens)`` is ``captioner.loss(images, tokens, word_dropout)``.

    The module the engine calls (and wraps in DDP or compiles), sharing every parameter with the
    captioner. Under ``torchrun`` the processes' batches hold different numbers of real tokens,
    so each process returns its *sum* divided by the global token count (all-reduced) times the
    number of processes: averaged over processes, as DDP does, that is the mean over every real
    token of the global batch, exactly as one process would compute it.
    """

    def __init__(self, captioner: Captioner, word_dropout: float = 0.0) -> None:
        super().__init__()
        self.captioner, self.word_dropout = captioner, word_dropout

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if world_size() == 1:
            return self.captioner.loss(images, tokens, word_dropout=self.word_dropout)
        total = self.captioner.loss(images, tokens, word_dropout=self.word_dropout, reduction="sum")
        count = all_reduce_sum((tokens[:, 1:] != self.captioner.pad_id).sum().float())
        return total * world_size() / count


def _trim_padding(pad_id: int) -> Any:
    """Drop the padding columns every caption of a batch has (on the host, before the copy)."""

    def trim(batch: Any) -> Any:
        images, tokens, *rest = batch
        width = int((tokens != pad_id).sum(1).max())
        return (images, tokens[:, :width], *rest)

    return trim


def fit_captioner(
    model: Captioner,
    images: Any,
    tokens: torch.Tensor | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    word_dropout: float = 0.0,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
    **engine_options: Any,
) -> History:
    """Teacher-forcing training with AdamW and one-cycle learning rate; returns the :class:`~tlcourse.train.History`.

    ``images`` are what ``model`` eats (images, or precomputed region features when the model
    has no encoder); ``tokens`` are ``<bos> ... <eos>`` ids from :meth:`WordTokenizer.encode`
    (or pass a ``Dataset`` of ``(image, tokens)`` as ``images``). ``history["loss"]`` is the
    mean loss per epoch. ``batch_size`` is per process (the model is wrapped in DDP under
    ``torchrun``); ``engine_options`` go to the engine (``amp``, ``channels_last``,
    ``compile``, ``accumulate``, ``grad_clip``, ``checkpoint``, ``resume``, ``nan_check_every``).
    """
    from tlcourse.train import Engine
    from tlcourse.train.engine import check_engine_options
    from tlcourse.train.loaders import as_dataset, paired_loader

    if not isinstance(model, Captioner):
        raise TypeError(f"model must be a Captioner, got {type(model).__name__}")
    if tokens is not None:
        check_tensor("images", images, dtype="float")
        check_tensor("tokens", tokens, ndim=2, dtype="int")
        if len(images) != len(tokens):
            raise ValueError(f"images and tokens must have the same length, got {len(images)} and {len(tokens)}")
    pairs = as_dataset("images", (images, tokens) if tokens is not None else images)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_positive("lr", lr)
    if not isinstance(word_dropout, (int, float)) or not 0.0 <= word_dropout < 1.0:
        raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout!r}")
    options = check_engine_options(engine_options, [k for k in ("amp", "channels_last", "compile", "accumulate",
                                                                "grad_clip", "checkpoint", "resume",
                                                                "nan_check_every")])
    loader = paired_loader(pairs, None, batch_size, torch.Generator().manual_seed(seed), drop_last=False,
                           transform=_trim_padding(model.pad_id))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader), pct_start=0.15)
    engine = Engine({"model": model}, {"optimizer": opt}, schedulers={"one_cycle": sched}, scheduler_interval="step",
                    device=device, progress=progress, desc="captioner", **options)
    net = engine.prepare(CaptionLoss(model, word_dropout), ddp=True)

    def step(batch: Any) -> dict[str, Any]:
        (x, t, *_), _ = batch
        return {"loss": net(x, t), "batch_size": len(x)}

    history = engine.run(loader, step, epochs=epochs)
    model.eval()
    return history


def _check_decoding(model: Any, images: torch.Tensor, bos_id: int, eos_id: int, max_len: int) -> None:
    if not isinstance(model, Captioner):
        raise TypeError(f"model must be a Captioner, got {type(model).__name__}")
    check_tensor("images", images, dtype="float")
    if len(images) == 0:
        raise ValueError("images is empty: expected at least one image")
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        check_int(name, value, minimum=0)
        if value >= model.vocab_size:
            raise ValueError(f"{name} must be < vocab_size={model.vocab_size}, got {value}")
    check_int("max_len", max_len, minimum=1)
    if max_len + 1 > model.max_len:
        raise ValueError(f"max_len + 1 (with <bos>) must be <= the model's max_len={model.max_len}, got {max_len}")


@torch.no_grad()
def greedy_decode(
    model: Captioner,
    images: torch.Tensor,
    *,
    bos_id: int = WordTokenizer.bos_id,
    eos_id: int = WordTokenizer.eos_id,
    max_len: int = 20,
) -> torch.Tensor:
    """Pick the most probable next word at every step.

    Returns ``(N, T)`` generated ids (without ``<bos>``), each row ending with ``<eos>`` followed
    by padding, or cut at ``max_len`` tokens.
    """
    _check_decoding(model, images, bos_id, eos_id, max_len)
    was_training = model.training
    model.eval()
    memory = model.memory(images)
    n = len(images)
    seqs = torch.full((n, 1), bos_id, dtype=torch.long, device=memory.device)
    done = torch.zeros(n, dtype=torch.bool, device=memory.device)
    for _ in range(max_len):
        logits = model.decode(memory, seqs)[:, -1]
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, model.pad_id), nxt)
        seqs = torch.cat([seqs, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if done.all():
            break
    model.train(was_training)
    return seqs[:, 1:]


@torch.no_grad()
def beam_search(
    model: Captioner,
    images: torch.Tensor,
    *,
    beam_width: int = 3,
    bos_id: int = WordTokenizer.bos_id,
    eos_id: int = WordTokenizer.eos_id,
    max_len: int = 20,
    length_penalty: float = 0.0,
) -> torch.Tensor:
    """Keep the ``beam_width`` most probable partial captions per image at every step.

    Beams are ranked by their summed log-probability; when every beam has ended (or after
    ``max_len`` tokens) the winner maximises ``log p / length**length_penalty`` (0 = raw
    probability). ``beam_width=1`` is exactly :func:`greedy_decode`. Output as greedy's.
    """
    _check_decoding(model, images, bos_id, eos_id, max_len)
    beam_width = check_int("beam_width", beam_width, minimum=1)
    if not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a number >= 0, got {length_penalty!r}")
    was_training = model.training
    model.eval()
    n, b, v = len(images), beam_width, model.vocab_size
    memory = model.memory(images).repeat_interleave(b, dim=0)  # (n*b, S, d)
    dev = memory.device
    seqs = torch.full((n, b, 1), bos_id, dtype=torch.long, device=dev)
    scores = torch.full((n, b), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first one
    done = torch.zeros(n, b, dtype=torch.bool, device=dev)
    lengths = torch.zeros(n, b, device=dev)
    for _ in range(max_len):
        logp = F.log_softmax(model.decode(memory, seqs.view(n * b, -1))[:, -1].float(), dim=-1).view(n, b, v)
        # A finished beam may only append padding, at no cost, so its score stays fixed.
        pad_only = torch.full((v,), float("-inf"), device=dev)
        pad_only[model.pad_id] = 0.0
        logp = torch.where(done[..., None], pad_only, logp)
        cand = (scores[..., None] + logp).view(n, b * v)
        scores, flat = cand.topk(b, dim=1)
        beam, token = flat // v, flat % v
        seqs = torch.cat([seqs.gather(1, beam[..., None].expand(-1, -1, seqs.shape[2])), token[..., None]], dim=2)
        was_done = done.gather(1, beam)
        lengths = lengths.gather(1, beam) + (~was_done).float()
        done = was_done | (token == eos_id)
        if (done | torch.isinf(scores)).all():  # every live beam has ended
            break
    final = scores / lengths.clamp(min=1.0) ** length_penalty
    best = final.argmax(dim=1)
    model.train(was_training)
    return seqs[torch.arange(n, device=dev), best, 1:]


def generate_captions(
    model: Captioner,
    tokenizer: WordTokenizer,
    images: torch.Tensor,
    *,
    beam_width: int = 1,
    max_len: int = 20,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> list[str]:
    """Captions as strings: greedy decoding (``beam_width=1``) or beam search, in batches."""
    if not isinstance(tokenizer, WordTokenizer):
        raise TypeError(f"tokenizer must be a WordTokenizer, got {type(tokenizer).__name__}")
    beam_width = check_int("beam_width", beam_width, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    dev = get_device(device)
    model.to(dev)
    out: list[str] = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(dev)
        ids = (
            greedy_decode(model, x, max_len=max_len)
            if beam_width == 1
            else beam_search(model, x, beam_width=beam_width, max_len=max_len)
        )
        out.extend(tokenizer.decode_batch(ids.cpu()))
    return out


def attribute_matches(captions: Sequence[str], attributes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per caption and attribute: does the caption name the true value? ``{name: (N,) bool}``.

    ``attributes`` holds the true values (as in :class:`~tlcourse.data.captions.CaptionDataset`:
    index tensors, ``count`` in 1..3). Each caption is read with
    :func:`~tlcourse.data.captions.parse_caption`; an attribute the caption does not mention
    counts as wrong.
    """
    from tlcourse.data.captions import ATTRIBUTES, COLOURS, POSITIONS, SHAPES, SIZES, parse_caption

    if isinstance(captions, str) or not isinstance(captions, Sequence) or len(captions) == 0:
        raise ValueError("captions must be a non-empty sequence of strings")
    missing = [a for a in ATTRIBUTES if a not in attributes]
    if missing:
        raise ValueError(f"attributes is missing {missing}")
    n = len(captions)
    for a in ATTRIBUTES:
        if len(attributes[a]) != n:
            raise ValueError(f"attributes[{a!r}] has {len(attributes[a])} values for {n} captions")
    names = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS}
    right = {a: torch.zeros(n, dtype=torch.bool) for a in ATTRIBUTES}
    for i, text in enumerate(captions):
        parsed = parse_caption(text)
        for a in ATTRIBUTES:
            truth = int(attributes[a][i])
            right[a][i] = parsed[a] == (truth if a == "count" else names[a][truth])
    return right


def attribute_accuracy(captions: Sequence[str], attributes: dict[str, torch.Tensor]) -> dict[str, float]:
    """How often generated captions name the right attributes (see :func:`attribute_matches`).

    Returns per-attribute accuracy, ``"shape+colour"`` (both right) and ``"all"`` (every
    attribute right).
    """
    right = attribute_matches(captions, attributes)
    result = {a: float(v.float().mean()) for a, v in right.items()}
    result["shape+colour"] = float((right["shape"] & right["colour"]).float().mean())
    result["all"] = float(torch.stack(list(right.values())).all(0).float().mean())
    return result
