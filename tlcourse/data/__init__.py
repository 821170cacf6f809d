"""Offline datasets and domain-shift builders (no downloads at run time)."""

from tlcourse.data.digits import (
    DIGIT_CLASSES,
    ArrayDataset,
    Split,
    dataset_labels,
    few_shot,
    load_mnist,
    load_mnistm,
    load_uci_digits,
    make_mnistm,
    stratified_split,
)
from tlcourse.data.text import (
    REVIEW_DOMAINS,
    SENTIMENT_CLASSES,
    LengthGroupedBatchSampler,
    TextDataset,
    few_shot_texts,
    load_reviews,
    make_text_collate,
    make_text_loader,
)

__all__ = [
    "REVIEW_DOMAINS",
    "SENTIMENT_CLASSES",
    "LengthGroupedBatchSampler",
    "TextDataset",
    "few_shot_texts",
    "load_reviews",
    "make_text_collate",
    "make_text_loader",
    "DIGIT_CLASSES",
    "ArrayDataset",
    "Split",
    "dataset_labels",
    "few_shot",
    "load_mnist",
    "load_mnistm",
    "load_uci_digits",
    "make_mnistm",
    "stratified_split",
]
