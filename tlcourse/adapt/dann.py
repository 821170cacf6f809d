"""Domain-adversarial training (DANN, Ganin et al., 2016).

A domain discriminator ``d`` learns to tell source features (label 1) from target features
(label 0); a gradient reversal layer in front of it makes the feature extractor ``g`` learn to
*fool* it, while the label classifier keeps the features discriminative for the task
(book Eq. (6.8)):

    min_{g,h} max_d  L_cls(h∘g) − λ · L_dom(d∘g),
    L_dom = −½ E_s[log d(g(x_s))] − ½ E_t[log(1 − d(g(x_t)))].

Ben-David et al. (2010) bound the target error by the source error plus the H-divergence
between the feature distributions; the discriminator's loss is a trainable estimate of that
divergence, which DANN drives up for the discriminator and down for the features.

:class:`DomainAdversarialLoss` follows TLlib's design: it owns its gradient reversal layer and
its discriminator, returns one scalar to add to the classification loss, and exposes the
discriminator's accuracy (close to 0.5 when the domains are aligned).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.adapt.grl import GradientReversal, dann_lambda
from tlcourse.adapt.loop import adaptation_step, train_adaptation
from tlcourse.adapt.nets import DomainDiscriminator
from tlcourse.checks import check_feature_pair, check_int, check_non_negative, check_positive
from tlcourse.train import History

__all__ = ["DomainAdversarialLoss", "check_feature_pair", "dann_step", "train_dann"]


class DomainAdversarialLoss(nn.Module):
    r"""``½ BCE(d(GRL(f_s)), 1) + ½ BCE(d(GRL(f_t)), 0)``: the DANN transfer loss.

    Args:
        discriminator: module ``features → logit`` (e.g. :class:`~tlcourse.adapt.nets.DomainDiscriminator`);
            an int builds a default one for features of that size.
        lambda\_: fixed gradient-reversal weight, used when ``max_steps`` is ``None`` and no
            schedule is wanted (``schedule=False``).
        gamma: steepness of the schedule ``λ_p = 2/(1+exp(−γp)) − 1`` (Ganin et al.: 10).
        max_steps: length of the schedule in training steps; :func:`train_dann` sets it to the
            run's length when left ``None``.
        schedule: follow the ``λ_p`` schedule (stepping once per training-mode call) or keep
            ``lambda_`` fixed.

    Attributes:
        lambda_: the current gradient-reversal weight.
        discriminator_accuracy: fraction of the last batch the discriminator got right, as a 0-d
            tensor on the features' device (``float(...)`` reads it; not reading it every step
            keeps an accelerator from waiting).
        step: training-mode calls so far (where the λ schedule stands); saved in
            ``state_dict()`` as extra state, so a resumed run continues the schedule.
    """

    def __init__(
        self,
        discriminator: nn.Module | int,
        lambda_: float = 1.0,
        gamma: float = 10.0,
        max_steps: int | None = None,
        schedule: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(discriminator, int) and not isinstance(discriminator, bool):
            discriminator = DomainDiscriminator(discriminator)
        if not isinstance(discriminator, nn.Module):
            raise TypeError(
                f"discriminator must be an nn.Module or a feature size (int), got {type(discriminator).__name__}"
            )
        self.discriminator = discriminator
        self.grl = GradientReversal(check_non_negative("lambda_", lambda_))
        self.gamma = float(check_positive("gamma", gamma))
        self.max_steps = None if max_steps is None else check_int("max_steps", max_steps, minimum=1)
        self.schedule = bool(schedule)
        self.step = 0
        self.discriminator_accuracy: torch.Tensor | float = float("nan")
        self._warned_fixed = False

    @property
    def lambda_(self) -> float:
        return self.grl.lambda_

    def _update_lambda(self) -> None:
        if self.schedule and self.max_steps is not None:
            self.grl.lambda_ = dann_lambda(min(self.step / self.max_steps, 1.0), self.gamma)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        check_feature_pair(f_s, f_t)
        if self.training:
            if self.schedule and self.max_steps is None and not self._warned_fixed:
                self._warned_fixed = True
                warnings.warn(
                    f"DomainAdversarialLoss has no max_steps: λ stays fixed at {self.lambda_:g} instead of following "
                    "Ganin et al.'s schedule 2/(1+exp(-γp))-1. Pass max_steps=<total training steps> (train_dann "
                    "does), or schedule=False to keep λ fixed on purpose", UserWarning, stacklevel=2)
            self._update_lambda()
            self.step += 1
        logits = self.discriminator(self.grl(torch.cat([f_s, f_t])))
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits.squeeze(1)
        if logits.shape != (len(f_s) + len(f_t),):
            raise ValueError(
                f"discriminator must output one logit per example, shape (N,) or (N, 1), got {tuple(logits.shape)} "
                "for N = len(f_s) + len(f_t): give it a 1-unit output (binary cross-entropy, source vs target), "
                "e.g. DomainDiscriminator(feature_dim)"
            )
        labels = torch.cat([f_s.new_ones(len(f_s)), f_t.new_zeros(len(f_t))])
        loss_s = F.binary_cross_entropy_with_logits(logits[: len(f_s)], labels[: len(f_s)])
        loss_t = F.binary_cross_entropy_with_logits(logits[len(f_s) :], labels[len(f_s) :])
        with torch.no_grad():
            self.discriminator_accuracy = ((logits > 0).float() == labels).float().mean()
        return 0.5 * (loss_s + loss_t)

    def get_extra_state(self) -> dict[str, Any]:
        return {"step": self.step, "max_steps": self.max_steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.step, self.max_steps = int(state["step"]), state["max_steps"]
        self._update_lambda()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma:g}, max_steps={self.max_steps}, schedule={self.schedule}"


def dann_step(
    model: nn.Module,
    adversarial_loss: DomainAdversarialLoss,
    optimizer: torch.optim.Optimizer,
    xs: torch.Tensor,
    ys: torch.Tensor,
    xt: torch.Tensor,
    trade_off: float = 1.0,
    concat: bool = False,
) -> dict[str, float]:
    """One DANN step (book Eq. (6.8)); ``optimizer`` must hold the discriminator's parameters too.

    Returns the step's losses, the source accuracy, the current ``lambda`` and the
    ``discriminator_accuracy``.
    """
    if not isinstance(adversarial_loss, DomainAdversarialLoss):
        raise TypeError(f"adversarial_loss must be a DomainAdversarialLoss, got {type(adversarial_loss).__name__}")
    out = adaptation_step(model, adversarial_loss, optimizer, xs, ys, xt, trade_off, concat)
    out["lambda"] = adversarial_loss.lambda_
    return out


def train_dann(
    model: nn.Module,
    source: Any,
    target: Any,
    *,
    epochs: int,
    discriminator: nn.Module | None = None,
    gamma: float = 10.0,
    **kwargs: Any,
) -> History:
    """Train ``model`` with DANN for ``epochs`` (see :func:`~tlcourse.adapt.loop.train_adaptation`
    for the other keyword arguments); the λ schedule spans the whole run.

    Returns the history; the trained :class:`DomainAdversarialLoss` (with its discriminator) is
    ``history.adversarial_loss``.
    """
    if discriminator is None:
        feature_dim = getattr(getattr(model, "backbone", None), "feature_dim", getattr(model, "num_features", None))
        if feature_dim is None:
            raise ValueError("pass a discriminator, or a model whose backbone has a feature_dim")
        discriminator = DomainDiscriminator(int(feature_dim))
    adv = DomainAdversarialLoss(discriminator, gamma=gamma)
    history = train_adaptation(model, source, target, adv, epochs=epochs, **kwargs)
    history.adversarial_loss = adv
    return history
