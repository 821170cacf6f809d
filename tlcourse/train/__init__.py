"""Training: one engine for every method, and ``fit`` / ``evaluate`` / ``predict`` for classification.

* :mod:`~tlcourse.train.engine` — :class:`Engine`: the epoch loop every method's step runs on.
* :mod:`~tlcourse.train.classification` — :func:`fit`, :func:`evaluate`.
* :mod:`~tlcourse.train.inference` — :func:`predict` (dataset order; images, texts) and :func:`predict_names`.
* :mod:`~tlcourse.train.history` — :class:`History` and :class:`NonFiniteLossError`.
* :mod:`~tlcourse.train.loaders` — the data contract, global batches sharded over processes.
* :mod:`~tlcourse.train.amp` — :func:`autocast_context` and loss scaling (mixed precision).
* :mod:`~tlcourse.train.state` — checkpoints that resume a run bitwise.
* :mod:`~tlcourse.train.features` — :func:`extract_features`.
"""

from tlcourse.train.amp import autocast_context
from tlcourse.train.classification import evaluate, fit, predict, predict_names
from tlcourse.train.engine import Engine, PlainContext, StepContext
from tlcourse.train.features import extract_features
from tlcourse.train.history import History, NonFiniteLossError
from tlcourse.train.loaders import make_loader

__all__ = [
    "History",
    "fit",
    "evaluate",
    "predict",
    "predict_names",
    "make_loader",
    "autocast_context",
    "NonFiniteLossError",
    "Engine",
    "StepContext",
    "PlainContext",
    "extract_features",
]
