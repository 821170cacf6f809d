"""CDAN+E: conditional domain-adversarial training with entropy conditioning (Long et al., 2018).

DANN aligns the *marginal* feature distributions: nothing stops it from mapping source "3"s onto
target "8"s. CDAN conditions the domain discriminator on the classifier's prediction: it sees
the **multilinear map** ``h = f ⊗ g`` (the outer product of the feature vector ``f`` and the
class probabilities ``g = softmax(logits)``, flattened), so aligning ``h`` aligns the joint
distribution of features and predicted classes (book Eq. (6.13)):

    min_{F,C} max_D  L_cls − λ · L_dom,   L_dom = Σ_i w_i BCE(D(f_i ⊗ g_i), domain_i) / Σ_i w_i.

**Entropy conditioning (+E)**: each example is weighted by ``w = 1 + exp(−H(g))``, so examples
with confident (low-entropy) predictions, whose ``g`` is informative, count more than uncertain
ones. As in the reference code, ``g`` is not back-propagated through the discriminator (it
enters the map as a constant); the features ``f`` get the reversed gradient.

:class:`CDANLoss` plugs into :func:`~tlcourse.adapt.loop.train_adaptation` (it sets
``uses_logits``) and inherits DANN's ``λ_p`` schedule and ``discriminator_accuracy``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.dann import DomainAdversarialLoss
from tlcourse.adapt.nets import DomainDiscriminator
from tlcourse.checks import check_feature_pair, check_int, check_tensor

__all__ = ["CDANLoss", "entropy_weights", "multilinear_map"]


def multilinear_map(features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``(N, d)`` features and ``(N, C)`` probabilities → ``(N, d·C)`` rows ``vec(f_i g_iᵀ)``."""
    check_tensor("features", features, ndim=2, dtype="float")
    check_tensor("probs", probs, ndim=2, dtype="float")
    if len(features) != len(probs):
        raise ValueError(f"features and probs must have the same number of rows, got {len(features)} and {len(probs)}")
    return torch.bmm(features.unsqueeze(2), probs.unsqueeze(1)).flatten(1)


def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """``1 + exp(−H(p))`` per row, normalised to mean 1 (CDAN+E's example weights)."""
    check_tensor("probs", probs, ndim=2, dtype="float")
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    w = 1.0 + torch.exp(-entropy)
    return w / w.mean()


class CDANLoss(DomainAdversarialLoss):
    """The CDAN(+E) transfer loss: a domain discriminator on ``f ⊗ softmax(logits)``.

    Args:
        feature_dim: size of the features ``f``.
        num_classes: number of classes (the discriminator sees ``feature_dim · num_classes`` inputs).
        discriminator: a module ``(d·C) → logit``; default: one hidden layer of 500 units.
        entropy: weight examples by ``1 + exp(−H)`` (CDAN+E) or not (plain CDAN).
        gamma, max_steps, schedule, lambda\\_: the gradient-reversal weight and its schedule, as
            in :class:`~tlcourse.adapt.dann.DomainAdversarialLoss`.

    Called as ``loss(f_s, f_t, logits_s, logits_t)`` (``uses_logits = True``).
    """

    uses_logits = True

    def __init__(self, feature_dim: int, num_classes: int, discriminator: nn.Module | None = None, *,
                 entropy: bool = True, gamma: float = 10.0, max_steps: int | None = None, schedule: bool = True,
                 lambda_: float = 1.0) -> None:
        feature_dim = check_int("feature_dim", feature_dim, minimum=1)
        num_classes = check_int("num_classes", num_classes, minimum=2)
        if discriminator is None:
            discriminator = DomainDiscriminator(feature_dim * num_classes, hidden=(500,))
        super().__init__(discriminator, lambda_=lambda_, gamma=gamma, max_steps=max_steps, schedule=schedule)
        self.feature_dim, self.num_classes, self.entropy = feature_dim, num_classes, bool(entropy)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor,  # type: ignore[override]
                logits_s: torch.Tensor | None = None, logits_t: torch.Tensor | None = None) -> torch.Tensor:
        check_feature_pair(f_s, f_t)
        if logits_s is None or logits_t is None:
            raise ValueError("CDANLoss needs the logits of both batches: loss(f_s, f_t, logits_s, logits_t)")
        for name, logits, f in (("logits_s", logits_s, f_s), ("logits_t", logits_t, f_t)):
            check_tensor(name, logits, ndim=2, dtype="float")
            if logits.shape != (len(f), self.num_classes):
                raise ValueError(f"{name} must have shape ({len(f)}, {self.num_classes}), got {tuple(logits.shape)}")
        if f_s.shape[1] != self.feature_dim:
            raise ValueError(f"features must have {self.feature_dim} columns, got {f_s.shape[1]}")
        if self.training:
            self._update_lambda()
            self.step += 1
        probs = torch.cat([logits_s, logits_t]).detach().softmax(1)
        h = multilinear_map(torch.cat([f_s, f_t]), probs)
        logits = self.discriminator(self.grl(h))
        if logits.ndim == 2:
            logits = logits.squeeze(1)
        labels = torch.cat([f_s.new_ones(len(f_s)), f_t.new_zeros(len(f_t))])
        per_example = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        n_s = len(f_s)
        if self.entropy:
            w_s, w_t = entropy_weights(probs[:n_s]), entropy_weights(probs[n_s:])
        else:
            w_s, w_t = torch.ones_like(per_example[:n_s]), torch.ones_like(per_example[n_s:])
        with torch.no_grad():
            self.discriminator_accuracy = ((logits > 0).float() == labels).float().mean()
        return 0.5 * ((w_s * per_example[:n_s]).mean() + (w_t * per_example[n_s:]).mean())

    def extra_repr(self) -> str:
        return f"entropy={self.entropy}, " + super().extra_repr()
