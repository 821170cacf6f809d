"""Fusing modalities: at the decision level (late), at the feature level, and with cross-attention.

Taxonomy after Baltrušaitis et al. (2019), *Multimodal Machine Learning: A Survey and Taxonomy*:

* **Late (decision-level) fusion** — independent models, one per modality, each outputs a
  probability distribution over the **same** label space; the distributions are combined:

  - mean rule, book Eq. (7.1): :math:`p(y\\mid x) = \\sum_m w_m\\, p_m(y\\mid x_m)`, with
    :math:`w_m \\ge 0`, :math:`\\sum_m w_m = 1`;
  - product rule, book Eq. (7.2): :math:`p(y\\mid x) \\propto \\prod_m p_m(y\\mid x_m)^{w_m}`
    (with all :math:`w_m = 1`, Bayes' rule when the modalities are conditionally independent
    given :math:`y` and the class prior is uniform);
  - learned (stacking): :class:`LearnedLateFusion` fits :math:`\\sum_m a_m \\log p_m + b` on a
    validation split.

  Averaging only makes sense when the :math:`p_m` are *calibrated* (temperature scaling,
  :class:`tlcourse.calibration.TemperatureScaler`) and share one label space. Averaging a
  1-unit sigmoid with a 10-way softmax (as a source document did) silently broadcasts two
  unrelated quantities; :func:`late_fusion` refuses it.
* **Feature-level fusion** — :class:`ConcatFusion`: concatenate the two feature vectors, then an
  MLP (early fusion when the encoders are trained with it).
* **Cross-attention fusion** — :class:`CrossAttentionFusion`: text tokens query image regions
  with :class:`torch.nn.MultiheadAttention` (Vaswani et al. 2017), so that each word gathers the
  visual evidence it needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_choice, check_int, check_labels, check_tensor

__all__ = [
    "check_probabilities",
    "late_fusion",
    "tune_fusion_weight",
    "LearnedLateFusion",
    "ConcatFusion",
    "CrossAttentionFusion",
]


def check_probabilities(name: str, probs: torch.Tensor, atol: float = 1e-3) -> torch.Tensor:
    """``probs`` must be ``(N, K)`` with ``K >= 2`` non-negative entries per row summing to 1.

    A ``(N, 1)`` sigmoid output is *not* a distribution over classes: convert it first with
    ``torch.cat([1 - p, p], dim=1)`` (and only fuse it with models of the same two classes).
    """
    check_tensor(name, probs, ndim=2, dtype="float")
    if probs.shape[1] < 2:
        raise ValueError(
            f"{name} must be (N, K) class probabilities with K >= 2, got shape {tuple(probs.shape)}; "
            "a one-unit sigmoid p is the distribution [1 - p, p] over two classes"
        )
    if probs.numel() and (probs.min() < 0 or (probs.sum(1) - 1).abs().max() > atol):
        raise ValueError(
            f"{name} must hold probabilities (non-negative rows summing to 1); apply softmax to logits first"
        )
    return probs


def _check_prob_list(probs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(probs, torch.Tensor) or not isinstance(probs, Sequence) or len(probs) == 0:
        raise TypeError("probs must be a non-empty list of (N, K) probability tensors, one per modality")
    probs = [check_probabilities(f"probs[{m}]", p) for m, p in enumerate(probs)]
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) > 1:
        raise ValueError(
            "all modalities must give probabilities over one common label space (same (N, K)), "
            f"got shapes {sorted(shapes)}"
        )
    return probs


def _check_weights(
    weights: Sequence[float] | torch.Tensor | None, m: int, like: torch.Tensor, normalize: bool
) -> torch.Tensor:
    if weights is None:
        w = torch.ones(m, dtype=like.dtype, device=like.device)
    else:
        w = torch.as_tensor(weights, dtype=like.dtype, device=like.device).flatten()
    if len(w) != m:
        raise ValueError(f"weights must have one entry per modality ({m}), got {len(w)}")
    if (w < 0).any() or w.sum() <= 0 or not torch.isfinite(w).all():
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w / w.sum() if normalize else w


def late_fusion(
    probs: Sequence[torch.Tensor],
    weights: Sequence[float] | torch.Tensor | None = None,
    rule: str = "mean",
) -> torch.Tensor:
    """Combine per-modality class probabilities ``(N, K)`` into one ``(N, K)`` distribution.

    ``rule="mean"``: weighted arithmetic mean, Eq. (7.1); ``weights`` (default: equal) are
    normalised to sum to 1. ``rule="product"``: :math:`\\prod_m p_m^{w_m}` renormalised, Eq. (7.2);
    ``weights`` are the exponents (default: all 1, the naive-Bayes product of experts).
    """
    probs = _check_prob_list(probs)
    check_choice("rule", rule, ("mean", "product"))
    w = _check_weights(weights, len(probs), probs[0], normalize=rule == "mean")
    stacked = torch.stack(probs)  # (M, N, K)
    if rule == "mean":
        return torch.einsum("m,mnk->nk", w, stacked)
    log_p = torch.einsum("m,mnk->nk", w, stacked.clamp(min=1e-12).log())
    return log_p.softmax(dim=1)


def tune_fusion_weight(
    probs: Sequence[torch.Tensor],
    labels: torch.Tensor,
    rule: str = "mean",
    steps: int = 21,
) -> float:
    """Weighted late fusion of two modalities: the weight ``w`` of the first (``1 - w`` of the second)
    that maximises accuracy on a **validation** split, by grid search over ``[0, 1]``.

    Ties go to the weight closest to 0.5 (equal weighting).
    """
    probs = _check_prob_list(probs)
    if len(probs) != 2:
        raise ValueError(f"tune_fusion_weight fuses exactly two modalities, got {len(probs)}")
    check_labels("labels", labels, probs[0].shape[1])
    if len(labels) != len(probs[0]):
        raise ValueError(f"labels must have one entry per row of probs ({len(probs[0])}), got {len(labels)}")
    steps = check_int("steps", steps, minimum=2)
    grid = torch.linspace(0, 1, steps).tolist()
    accs = [float((late_fusion(probs, [w, 1 - w], rule).argmax(1) == labels).float().mean()) for w in grid]
    best = max(accs)
    return min((w for w, a in zip(grid, accs) if a == best), key=lambda w: abs(w - 0.5))


class LearnedLateFusion(nn.Module):
    """Stacking: ``logits = Σ_m a_m · log p_m + b``, fitted on a validation split.

    ``a_m`` (one weight per modality) and ``b`` (one bias per class) are learned by minimising the
    negative log-likelihood with L-BFGS in :meth:`fit`; ``softmax(forward(probs))`` is the fused
    distribution. With ``a = (1, …, 1)``, ``b = 0`` it is the (unnormalised) product rule.
    """

    def __init__(self, num_modalities: int, num_classes: int) -> None:
        super().__init__()
        check_int("num_modalities", num_modalities, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        self.num_modalities, self.num_classes = num_modalities, num_classes
        self.weight = nn.Parameter(torch.ones(num_modalities))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        probs = _check_prob_list(probs)
        if len(probs) != self.num_modalities or probs[0].shape[1] != self.num_classes:
            raise ValueError(
                f"expected {self.num_modalities} tensors of shape (N, {self.num_classes}), "
                f"got {len(probs)} of shape {tuple(probs[0].shape)}"
            )
        log_p = torch.stack([p.clamp(min=1e-12).log() for p in probs])  # (M, N, K)
        return torch.einsum("m,mnk->nk", self.weight, log_p) + self.bias

    def fit(self, probs: Sequence[torch.Tensor], labels: torch.Tensor, max_iter: int = 100) -> LearnedLateFusion:
        """Fit on validation probabilities and labels; returns ``self``."""
        probs = [p.detach() for p in _check_prob_list(probs)]
        check_labels("labels", labels, self.num_classes)
        if len(labels) != len(probs[0]):
            raise ValueError(f"labels must have one entry per row of probs ({len(probs[0])}), got {len(labels)}")
        check_int("max_iter", max_iter, minimum=1)
        opt = torch.optim.LBFGS(self.parameters(), lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(self(probs), labels)
            loss.backward()
            return loss

        opt.step(closure)
        return self


def _optional_encoder(name: str, module: nn.Module | None) -> nn.Module:
    if module is None:
        return nn.Identity()
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module or None, got {type(module).__name__}")
    return module


class ConcatFusion(nn.Module):
    """Feature-level fusion: ``MLP([f_image(x_image); f_text(x_text)])`` → class logits.

    Without encoders the inputs are feature vectors ``(N, image_dim)`` and ``(N, text_dim)``
    (e.g. from frozen unimodal models); with ``image_encoder``/``text_encoder`` (modules returning
    those vectors) the whole model trains end to end — early fusion.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        num_classes: int,
        hidden: int = 128,
        dropout: float = 0.1,
        image_encoder: nn.Module | None = None,
        text_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("image_dim", image_dim), ("text_dim", text_dim), ("hidden", hidden)):
            check_int(name, value, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        self.image_dim, self.text_dim = image_dim, text_dim
        self.image_encoder = _optional_encoder("image_encoder", image_encoder)
        self.text_encoder = _optional_encoder("text_encoder", text_encoder)
        self.head = nn.Sequential(
            nn.LayerNorm(image_dim + text_dim),
            nn.Linear(image_dim + text_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        a, b = self.image_encoder(image), self.text_encoder(text)
        check_tensor("image features", a, ndim=2, dtype="float")
        check_tensor("text features", b, ndim=2, dtype="float")
        if a.shape[1] != self.image_dim or b.shape[1] != self.text_dim:
            raise ValueError(
                f"expected features of sizes image_dim={self.image_dim} and text_dim={self.text_dim}, "
                f"got {a.shape[1]} and {b.shape[1]}"
            )
        if len(a) != len(b):
            raise ValueError(f"image and text must pair up (same batch size), got {len(a)} and {len(b)}")
        return self.head(torch.cat([a, b], dim=1))


class CrossAttentionFusion(nn.Module):
    """Text tokens attend to image regions, then pool and classify.

    With :math:`Q = T W_Q` (text tokens), :math:`K = R W_K`, :math:`V = R W_V` (image regions),
    one block computes :math:`H = \\mathrm{LN}(Q + \\mathrm{MHA}(Q, K, V))`,
    :math:`H \\leftarrow H + \\mathrm{FFN}(\\mathrm{LN}(H))` (book Eq. (7.3),
    :math:`\\mathrm{MHA}` = :class:`torch.nn.MultiheadAttention`), averages :math:`H` over the real
    text tokens and applies a linear classifier. The attention weights of the last call are kept
    in :attr:`last_attention` ``(N, L_text, S_image)`` for plotting.

    Inputs are token sequences ``image (N, S, image_dim)`` and ``text (N, L, text_dim)`` — or raw
    inputs when ``image_encoder``/``text_encoder`` (returning such sequences) are given.
    ``text_padding_mask`` ``(N, L)`` is True at padding positions (e.g. ``ids == pad_id``).
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        num_classes: int,
        d_model: int = 64,
        nhead: int = 4,
        dropout: float = 0.1,
        image_encoder: nn.Module | None = None,
        text_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("image_dim", image_dim), ("text_dim", text_dim), ("d_model", d_model), ("nhead", nhead)):
            check_int(name, value, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
        self.image_dim, self.text_dim = image_dim, text_dim
        self.image_encoder = _optional_encoder("image_encoder", image_encoder)
        self.text_encoder = _optional_encoder("text_encoder", text_encoder)
        self.query = nn.Linear(text_dim, d_model)
        self.context = nn.Linear(image_dim, d_model)
        self.attention = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model)
        )
        self.head = nn.Linear(d_model, num_classes)
        self.last_attention: torch.Tensor | None = None

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        text_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        regions, words = self.image_encoder(image), self.text_encoder(text)
        check_tensor("image tokens", regions, ndim=3, dtype="float")
        check_tensor("text tokens", words, ndim=3, dtype="float")
        if regions.shape[2] != self.image_dim or words.shape[2] != self.text_dim:
            raise ValueError(
                f"expected token sizes image_dim={self.image_dim} and text_dim={self.text_dim}, "
                f"got {regions.shape[2]} and {words.shape[2]}"
            )
        if len(regions) != len(words):
            raise ValueError(f"image and text must pair up (same batch size), got {len(regions)} and {len(words)}")
        if text_padding_mask is not None:
            check_tensor("text_padding_mask", text_padding_mask, ndim=2, dtype=torch.bool)
            if text_padding_mask.shape != words.shape[:2]:
                raise ValueError(
                    f"text_padding_mask must have shape {tuple(words.shape[:2])}, got {tuple(text_padding_mask.shape)}"
                )
        q = self.query(words)
        kv = self.context(regions)
        attended, weights = self.attention(q, kv, kv, need_weights=True)
        self.last_attention = weights.detach()
        h = self.norm1(q + attended)
        h = h + self.ffn(self.norm2(h))
        if text_padding_mask is None:
            pooled = h.mean(dim=1)
        else:
            keep = (~text_padding_mask).unsqueeze(-1).to(h.dtype)
            pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.head(pooled)
