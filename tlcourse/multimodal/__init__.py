"""Multimodal learning (chapter 7): fusion, a shared image–text space, and captioning.

* :mod:`~tlcourse.multimodal.fusion` — late fusion of calibrated probabilities (mean, weighted,
  product, learned), feature-level concatenation, cross-attention fusion.
* :mod:`~tlcourse.multimodal.contrastive` — CLIP-style symmetric InfoNCE with a learnable
  temperature, the dual encoder, zero-shot classification, retrieval Recall@k.
* :mod:`~tlcourse.multimodal.captioning` — encoder–decoder captioner with cross-attention,
  greedy and beam decoding, attribute accuracy.
* :mod:`~tlcourse.multimodal.caption_metrics` — corpus BLEU-4 and CIDEr-D of generated captions.
* :mod:`~tlcourse.multimodal.tokenizer` — the word-level tokenizer.
* :mod:`~tlcourse.multimodal.encoders` — small image/text encoders and frozen sentence embeddings.
"""

from tlcourse.multimodal.caption_metrics import BleuResult, CiderD, caption_tokens, cider_d, corpus_bleu
from tlcourse.multimodal.captioning import (
    Captioner,
    attribute_accuracy,
    attribute_matches,
    beam_search,
    fit_captioner,
    generate_captions,
    greedy_decode,
)
from tlcourse.multimodal.contrastive import (
    ContrastiveLoss,
    DualEncoder,
    average_prompts,
    clip_loss,
    embed,
    fit_dual_encoder,
    recall_at_k,
    zero_shot_logits,
)
from tlcourse.multimodal.encoders import ConvImageEncoder, EmbeddingTable, TokenTextEncoder, sentence_embeddings
from tlcourse.multimodal.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    LearnedLateFusion,
    check_probabilities,
    late_fusion,
    tune_fusion_weight,
)
from tlcourse.multimodal.tokenizer import WordTokenizer, subword_ids

__all__ = [
    "Captioner",
    "WordTokenizer",
    "subword_ids",
    "BleuResult",
    "CiderD",
    "caption_tokens",
    "cider_d",
    "corpus_bleu",
    "attribute_accuracy",
    "attribute_matches",
    "beam_search",
    "fit_captioner",
    "generate_captions",
    "greedy_decode",
    "ContrastiveLoss",
    "DualEncoder",
    "average_prompts",
    "clip_loss",
    "embed",
    "fit_dual_encoder",
    "recall_at_k",
    "zero_shot_logits",
    "ConvImageEncoder",
    "EmbeddingTable",
    "TokenTextEncoder",
    "sentence_embeddings",
    "ConcatFusion",
    "CrossAttentionFusion",
    "LearnedLateFusion",
    "check_probabilities",
    "late_fusion",
    "tune_fusion_weight",
]
