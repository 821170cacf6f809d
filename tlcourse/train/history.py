"""What a training run records: :class:`History`, and the error raised when the loss diverges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["History", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Raised by :func:`fit` when the training loss becomes NaN or infinite."""


@dataclass
class History:
    """Per-epoch records of a :func:`fit` run (``history["val_accuracy"]`` → list)."""

    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None

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
        return {"records": self.records, "best_epoch": self.best_epoch}

    def plot(self, ax: Any = None, title: str | None = None) -> Any:
        """Loss and accuracy curves for the train (and validation) splits."""
        from tlcourse.plots import plot_history

        return plot_history(self, ax=ax, title=title)
