"""Offline datasets and domain-shift builders (no downloads at run time)."""

from tlcourse.data.digits import (
    DIGIT_CLASSES,
    ArrayDataset,
    Split,
    few_shot,
    load_mnist,
    load_mnistm,
    load_uci_digits,
    make_mnistm,
    stratified_split,
)

__all__ = [
    "DIGIT_CLASSES",
    "ArrayDataset",
    "Split",
    "few_shot",
    "load_mnist",
    "load_mnistm",
    "load_uci_digits",
    "make_mnistm",
    "stratified_split",
]
