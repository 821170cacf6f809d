"""Domain adaptation (chapter 6): learn from a labelled *source* domain for an unlabelled *target*.

One module per idea, each readable top to bottom:

* :mod:`~tlcourse.adapt.grl` — gradient reversal layer, DANN's λ and learning-rate schedules
* :mod:`~tlcourse.adapt.loop` — one training loop for feature-level methods (source-only, MMD, CORAL, DANN)
* :mod:`~tlcourse.adapt.dann` — :class:`DomainAdversarialLoss` (owns its GRL and discriminator), DANN step/loop
* :mod:`~tlcourse.adapt.adda` — two-stage ADDA with an untied target encoder
* :mod:`~tlcourse.adapt.pixel` — pixel-level GAN (PixelDA-style): restyle source images, train on them
* :mod:`~tlcourse.adapt.discrepancy` — MMD (biased/unbiased, multi-bandwidth) and Deep CORAL
* :mod:`~tlcourse.adapt.distance` — proxy A-distance from a domain classifier
* :mod:`~tlcourse.adapt.adabn` — AdaBN: batch-norm statistics of the target domain
* :mod:`~tlcourse.adapt.gan` — a 1-D GAN and the optimal discriminator
* :mod:`~tlcourse.adapt.nets` — the LeNet-style digit network and a domain discriminator
"""

from tlcourse.adapt.adabn import adapt_batchnorm, has_batchnorm
from tlcourse.adapt.adda import adda_discriminator_loss, adda_step, train_adda
from tlcourse.adapt.dann import DomainAdversarialLoss, dann_step, train_dann
from tlcourse.adapt.discrepancy import CORALLoss, MMDLoss, coral_loss, covariance, gaussian_kernel, mmd2
from tlcourse.adapt.distance import domain_classifier_error, proxy_a_distance
from tlcourse.adapt.gan import (
    gan_losses,
    gan_value_at_optimum,
    gaussian_pdf,
    js_divergence,
    kde,
    optimal_discriminator,
    train_gan_1d,
)
from tlcourse.adapt.grl import (
    GradientReversal,
    GradientReversalFunction,
    dann_lambda,
    dann_lr,
    dann_lr_scheduler,
    grad_reverse,
)
from tlcourse.adapt.loop import accuracy_on, adaptation_step, extract_features, train_adaptation
from tlcourse.adapt.nets import DomainDiscriminator, LeNet, LeNetBackbone
from tlcourse.adapt.pixel import ImageDiscriminator, PixelGenerator, pixel_da_step, train_pixel_da, translate

__all__ = [
    "CORALLoss",
    "DomainAdversarialLoss",
    "DomainDiscriminator",
    "GradientReversal",
    "GradientReversalFunction",
    "ImageDiscriminator",
    "LeNet",
    "LeNetBackbone",
    "MMDLoss",
    "PixelGenerator",
    "accuracy_on",
    "adapt_batchnorm",
    "adaptation_step",
    "adda_discriminator_loss",
    "adda_step",
    "coral_loss",
    "covariance",
    "dann_lambda",
    "dann_lr",
    "dann_lr_scheduler",
    "dann_step",
    "domain_classifier_error",
    "extract_features",
    "gan_losses",
    "gan_value_at_optimum",
    "gaussian_kernel",
    "gaussian_pdf",
    "grad_reverse",
    "has_batchnorm",
    "js_divergence",
    "kde",
    "mmd2",
    "optimal_discriminator",
    "pixel_da_step",
    "proxy_a_distance",
    "train_adaptation",
    "train_adda",
    "train_dann",
    "train_gan_1d",
    "train_pixel_da",
    "translate",
]
