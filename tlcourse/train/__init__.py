"""Training: one engine for every method, and ``fit`` / ``evaluate`` / ``predict`` for classification.

* :mod:`~tlcourse.train.classification` — :func:`fit`, :func:`evaluate`, :func:`predict`.
* :mod:`~tlcourse.train.history` — :class:`History` (per-epoch records) and :class:`NonFiniteLossError`.
* :mod:`~tlcourse.train.loaders` — :func:`make_loader` and batch helpers.
* :mod:`~tlcourse.train.amp` — :func:`autocast_context` (mixed precision).
"""

from tlcourse.train.amp import autocast_context
from tlcourse.train.classification import evaluate, fit, predict
from tlcourse.train.history import History, NonFiniteLossError
from tlcourse.train.loaders import make_loader

__all__ = ["History", "fit", "evaluate", "predict", "make_loader", "autocast_context", "NonFiniteLossError"]
