"""Figures the chapters share: image grids, learning curves, confusion matrices, embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["show_images", "plot_history", "plot_confusion_matrix", "plot_embedding", "plot_curves"]


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def show_images(
    images: torch.Tensor,
    labels: Sequence[Any] | torch.Tensor | None = None,
    ncols: int = 8,
    title: str | None = None,
    classes: Sequence[str] | None = None,
    size: float = 1.1,
) -> Any:
    """A grid of images ``(N, C, H, W)`` in [0, 1] with optional labels above each one."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError("images must be a tensor of shape (N, 1 or 3, H, W)")
    if len(images) == 0:
        raise ValueError("images is empty: expected at least one image")
    plt = _plt()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].detach().cpu().float().clamp(0, 1)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        if labels is not None:
            lab = labels[i]
            lab = int(lab) if isinstance(lab, torch.Tensor) else lab
            ax.set_title(classes[lab] if classes is not None else str(lab), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(
    x: Sequence[float],
    curves: dict[str, tuple[Sequence[float], Sequence[float] | None]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    ax: Any = None,
) -> Any:
    """Several ``name → (mean, std or None)`` curves over ``x`` with shaded ± std bands."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, (mean, std) in curves.items():
        mean = np.asarray(mean, dtype=float)
        ax.plot(x, mean, marker="o", label=name)
        if std is not None:
            std = np.asarray(std, dtype=float)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_history(history: Any, ax: Any = None, title: str | None = None) -> Any:
    """Loss (left) and accuracy (right) per epoch for train and, if present, validation."""
    plt = _plt()
    records = history.records if hasattr(history, "records") else history
    if not records:
        raise ValueError("history is empty: train for at least one epoch first")
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [r["epoch"] for r in records]
    for split in ("train", "val"):
        if f"{split}_loss" in records[0]:
            ax[0].plot(epochs, [r[f"{split}_loss"] for r in records], marker=".", label=split)
            ax[1].plot(epochs, [r[f"{split}_accuracy"] for r in records], marker=".", label=split)
    for a, name in zip(ax, ("loss", "accuracy")):
        a.set_xlabel("epoch")
        a.set_ylabel(name)
        a.grid(alpha=0.3)
        a.legend()
    if title:
        ax[0].figure.suptitle(title)
    return ax


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str] | None = None, title: str | None = None,
                          normalize: bool = True, ax: Any = None) -> Any:
    """Heat map of a confusion matrix (rows: true class, columns: predicted class)."""
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square matrix, got shape {cm.shape}")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    shown = cm / cm.sum(1, keepdims=True).clip(min=1) if normalize else cm
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    n = len(cm)
    ticks = classes if classes is not None else [str(i) for i in range(n)]
    ax.set_xticks(range(n), ticks)
    ax.set_yticks(range(n), ticks)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{shown[i, j]:.2f}" if normalize else int(cm[i, j]), ha="center", va="center",
                        fontsize=7, color="white" if shown[i, j] > shown.max() / 2 else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    return ax


def plot_embedding(
    features: torch.Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    domains: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    method: str = "pca",
    title: str | None = None,
    domain_names: Sequence[str] = ("source", "target"),
    ax: Any = None,
    seed: int = 0,
) -> Any:
    """2-D map of feature vectors (PCA or t-SNE), coloured by class, marker by domain."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"features must be a 2-D array with at least 3 rows, got shape {x.shape}")
    if method == "pca":
        xy = PCA(2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        xy = TSNE(2, init="pca", perplexity=min(30, len(x) - 1), random_state=seed).fit_transform(x)
    else:
        raise ValueError(f"method must be one of ['pca', 'tsne'], got {method!r}")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    lab = None if labels is None else np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if isinstance(domains, torch.Tensor):
        domains = domains.cpu()
    dom = np.zeros(len(x), int) if domains is None else np.asarray(domains)
    markers = ["o", "^", "s", "x"]
    for d in np.unique(dom):
        rows = dom == d
        name = domain_names[d] if domains is not None and d < len(domain_names) else None
        ax.scatter(xy[rows, 0], xy[rows, 1], c=None if lab is None else lab[rows], cmap="tab10", vmin=0, vmax=9,
                   s=8, alpha=0.7, marker=markers[d % len(markers)], label=name)
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    if domains is not None:
        ax.legend(markerscale=2)
    if title:
        ax.set_title(title)
    return ax
