"""What a training run records: :class:`History`, and the error raised when the loss diverges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["History", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Raised by every training loop when a loss becomes NaN or infinite."""


@dataclass
class History:
    """What a training run recorded: every loop of the package returns one.

    Attributes:
        records: one dict per epoch (``history["val_accuracy"]`` → the list over epochs).
        best_epoch: index of the best epoch for the monitored metric (early stopping), if any.
        steps: per-step traces, ``{name: [value per step]}``, for loops that keep them (the
            1-D GAN, multi-task learning).
        seconds: wall-clock time of the run's training epochs.

    A loop may attach what else it produced as attributes, named in its docstring (e.g.
    :func:`~tlcourse.adapt.adda.train_adda` sets ``history.target_model``).
    """

    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    steps: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def __getitem__(self, key: str) -> list[float]:
        if not self.records or key not in self.records[0]:
            known = sorted(self.records[0]) if self.records else []
            raise KeyError(f"no metric {key!r} in history; known metrics: {known}")
        return [r[key] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "best_epoch": self.best_epoch, "steps": self.steps, "seconds": self.seconds}

    def load_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`to_dict` returned (a resumed run continues its history)."""
        self.records = [dict(r) for r in state["records"]]
        self.best_epoch = state.get("best_epoch")
        self.steps = {k: list(v) for k, v in state.get("steps", {}).items()}
        self.seconds = float(state.get("seconds", 0.0))

    def plot(self, ax: Any = None, title: str | None = None) -> Any:
        """Loss and accuracy curves for the train (and validation) splits."""
        from tlcourse.plots import plot_history

        return plot_history(self, ax=ax, title=title)
