"""Multi-task learning: one shared encoder, one head per task, and how to weigh the tasks.

Chapter 5 of the book. Hard parameter sharing (Caruana, 1997; Ruder, 2017) trains one encoder
``f_θ`` for all tasks and a small head ``h_τ`` per task on the joint objective

    L(θ, φ) = Σ_τ w_τ L_τ(θ, φ_τ),                                         Eq. (5.1)

where ``L_τ`` is the loss of task ``τ``. The methods below differ only in how the weights
``w_τ`` are chosen, or, for PCGrad, in how the task gradients are combined.

**One contract for every method.** A weighting is an :class:`torch.nn.Module` built with the
task names, and a training step of *your own* loop is::

    losses = {"digit": ce(out["digit"], y_digit), "parity": ce(out["parity"], y_parity)}
    optimizer.zero_grad()
    weights = weighting.backward(losses, shared_parameters=model.shared_parameters())
    optimizer.step()

``backward`` fills the ``.grad`` of every parameter (like ``loss.backward()``) and returns the
weights it used. Put ``weighting.parameters()`` in the optimizer as well (only
:class:`UncertaintyWeighting` and :class:`GradNorm` have any). Call ``weighting.end_epoch()``
at the end of each epoch (only :class:`DynamicWeightAverage` uses it). Methods that only
re-weight losses also offer ``combine(losses) -> Tensor``, the weighted sum to back-propagate.

=========================  =============================  ======================
name (``make_weighting``)  class                          paper
=========================  =============================  ======================
``"equal"``                :class:`EqualWeighting`        Eq. (5.1) with w_τ = 1
``"uncertainty"``          :class:`UncertaintyWeighting`  Kendall et al. (2018)
``"dwa"``                  :class:`DynamicWeightAverage`  Liu et al. (2019)
``"gradnorm"``             :class:`GradNorm`              Chen et al. (2018)
``"pcgrad"``               :class:`PCGrad`                Yu et al. (2020)
=========================  =============================  ======================

Modules: :mod:`~tlcourse.multitask.model` (hard parameter sharing),
:mod:`~tlcourse.multitask.gradients` (task gradients, cosines, PCGrad's projection),
:mod:`~tlcourse.multitask.weightings` (the weightings and their factory),
:mod:`~tlcourse.multitask.training` (:func:`fit_multitask`),
:mod:`~tlcourse.multitask.evaluation` (per-task accuracy, relative gain) and
:mod:`~tlcourse.multitask.controls` (images without labels, shuffled labels, label association).
"""

from tlcourse.multitask.controls import label_association, shuffled_labels, unlabelled_loss
from tlcourse.multitask.evaluation import evaluate_multitask, relative_gain
from tlcourse.multitask.gradients import gradient_cosine, pcgrad_project, task_gradients
from tlcourse.multitask.model import MultiTaskModel
from tlcourse.multitask.training import MultiTaskHistory, fit_multitask
from tlcourse.multitask.weightings import (
    WEIGHTINGS,
    DynamicWeightAverage,
    EqualWeighting,
    GradNorm,
    LossWeighting,
    PCGrad,
    UncertaintyWeighting,
    Weighting,
    dwa_weights,
    make_weighting,
)

__all__ = [
    "MultiTaskModel",
    "Weighting",
    "LossWeighting",
    "EqualWeighting",
    "UncertaintyWeighting",
    "DynamicWeightAverage",
    "GradNorm",
    "PCGrad",
    "WEIGHTINGS",
    "make_weighting",
    "dwa_weights",
    "pcgrad_project",
    "task_gradients",
    "gradient_cosine",
    "relative_gain",
    "MultiTaskHistory",
    "fit_multitask",
    "evaluate_multitask",
    "unlabelled_loss",
    "shuffled_labels",
    "label_association",
]

