"""The training record returned by :func:`adlib.train.fit`: one row per step and per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """Training record: one row per optimisation step and one per epoch.

    Step rows hold ``epoch``, ``step`` (global index) and the values the step returned (``loss``
    for the default step). Epoch rows hold ``epoch``, the step values averaged over the epoch,
    validation values (``val_*``), learning rates (``lr``/``lr_<name>``) and ``seconds``.
    """

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    trained: bool = True
    """``False`` when :func:`load_or_train` loaded finished weights instead of training."""

    @property
    def train_seconds(self) -> float:
        """Total wall time over all recorded epochs (including those before a resume)."""
        return float(sum(row.get("seconds", 0.0) for row in self.epochs))

    def to_frame(self, per: str = "epoch"):
        """The record as a ``pandas.DataFrame`` (``per="epoch"`` or ``"step"``)."""
        import pandas as pd

        if per not in ("epoch", "step"):
            raise ValueError(f'per must be "epoch" or "step", got {per!r}')
        return pd.DataFrame(self.epochs if per == "epoch" else self.steps)

    to_dataframe = to_frame

    def state_dict(self) -> dict[str, list[dict[str, float]]]:
        """Plain lists/dicts/floats, safe for ``torch.load(weights_only=True)``."""
        return {"steps": [dict(r) for r in self.steps], "epochs": [dict(r) for r in self.epochs]}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> History:
        """Inverse of :meth:`state_dict`."""
        return cls(steps=[dict(r) for r in state["steps"]], epochs=[dict(r) for r in state["epochs"]])

    def plot(self, per: str = "step", **kwargs: Any):
        """Shortcut for :func:`adlib.viz.training_curves`."""
        from adlib.viz import training_curves

        return training_curves(self, per=per, **kwargs)

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("epoch",))
        return f"History({len(self.epochs)} epochs, {len(self.steps)} steps; last: {shown})"
