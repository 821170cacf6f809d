"""Domain adaptation (chapter 6): learn from a labelled *source* domain for an unlabelled *target*.

One module per idea, each readable top to bottom:

* :mod:`~tlcourse.adapt.grl` — gradient reversal layer, DANN's λ and learning-rate schedules
* :mod:`~tlcourse.adapt.loop` — one training loop for feature-level methods (source-only, MMD, CORAL, DANN)
* :mod:`~tlcourse.adapt.dann` — :class:`DomainAdversarialLoss` (owns its GRL and discriminator), DANN step/loop
* :mod:`~tlcourse.adapt.adda` — two-stage ADDA with an untied target encoder
* :mod:`~tlcourse.adapt.pixel` — pixel-level GAN (PixelDA-style): restyle source images, train on them
* :mod:`~tlcourse.adapt.cdan` — :class:`CDANLoss`: class-aware adversarial alignment with entropy conditioning
* :mod:`~tlcourse.adapt.selection` — label-free model selection (IWCV, DEV, SND, entropy), a labelled target set
* :mod:`~tlcourse.adapt.discrepancy` — MMD (biased/unbiased, multi-bandwidth) and Deep CORAL
* :mod:`~tlcourse.adapt.distance` — proxy A-distance from a domain classifier
* :mod:`~tlcourse.adapt.adabn` — AdaBN: batch-norm statistics of the target domain
* :mod:`~tlcourse.adapt.gan` — a 1-D GAN and the optimal discriminator
* :mod:`~tlcourse.adapt.nets` — the LeNet-style digit network and a domain discriminator

Names are imported lazily (PEP 562): ``from tlcourse.adapt import MMDLoss`` loads
:mod:`~tlcourse.adapt.discrepancy` only, not the training loops, so a user who drops a loss
into their own loop pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES: dict[str, tuple[str, ...]] = {
    "adabn": ("adapt_batchnorm", "has_batchnorm"),
    "adda": ("adda_discriminator_loss", "adda_step", "train_adda"),
    "dann": ("DomainAdversarialLoss", "dann_step", "train_dann"),
    "discrepancy": ("CORALLoss", "MMDLoss", "coral_loss", "covariance", "gaussian_kernel", "mmd2"),
    "distance": ("domain_classifier_error", "proxy_a_distance"),
    "gan": ("gan_losses", "gan_value_at_optimum", "gaussian_pdf", "js_divergence", "kde", "optimal_discriminator",
            "train_gan_1d"),
    "grl": ("GradientReversal", "GradientReversalFunction", "dann_lambda", "dann_lr", "dann_lr_scheduler",
            "grad_reverse"),
    "loop": ("accuracy_on", "adaptation_step", "extract_features", "train_adaptation"),
    "nets": ("DomainDiscriminator", "LeNet", "LeNetBackbone"),
    "pixel": ("ImageDiscriminator", "PixelGenerator", "pixel_da_step", "train_pixel_da", "translate"),
    "selection": ("CRITERIA", "density_ratio", "dev_risk", "iwcv_risk", "labelled_target_validation", "outputs_of",
                  "prediction_entropy", "score_candidate", "select", "snd_score"),
    "cdan": ("CDANLoss", "entropy_weights", "multilinear_map"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'tlcourse.adapt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tlcourse.adapt.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
