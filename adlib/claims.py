"""Claims from the seed texts, checked against what a notebook measured.

A :class:`Claim` pairs one statement from a source project's text with the number a notebook
measured for it; :func:`claims_table` lays several out as a table. The verdict ``holds`` is a
boolean the notebook *computes* from its own measurements (never typed in), or ``None`` when the
claim cannot be checked with what this run has (e.g. it needs pixel masks); say why in
``measured``.

Example::

    Claim(
        claim="a larger latent space reconstructs defects too",
        source="seed 000, section 4.2",
        measured=f"pixel F1 {f1_small:.3f} (latent 50) vs {f1_large:.3f} (latent 500)",
        holds=f1_small > f1_large,
        data="synthetic hazelnut stand-in",
    )
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = ("claim", "source", "measured", "holds", "data")
"""The columns of :func:`claims_table`, in order."""

VERDICTS: dict[bool | None, str] = {True: "holds", False: "does not hold", None: "not checked"}
"""How :func:`claims_table` shows ``Claim.holds``."""


@dataclass(frozen=True)
class Claim:
    """One claim from a source text and what this run measured for it.

    Attributes:
        claim: The statement, in a few words.
        source: Where it is stated (seed file and section).
        measured: What this run measured, as text with the numbers (or why it cannot be checked).
        holds: True / False as computed from the measurement; None when it cannot be checked here.
        data: The data it was measured on (real dataset or synthetic stand-in, category).
    """

    claim: str
    source: str
    measured: str
    holds: bool | None
    data: str

    def __post_init__(self) -> None:
        if isinstance(self.holds, np.bool_):
            # a comparison of numpy numbers, the usual way a notebook computes the verdict
            object.__setattr__(self, "holds", bool(self.holds))
        elif self.holds is not None and not isinstance(self.holds, bool):
            raise TypeError(
                f"Claim.holds must be True, False or None (not checked), got {self.holds!r} "
                f"for claim {self.claim!r}: compare the measured numbers, e.g. holds=a > b."
            )


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a table, one row each, verdicts in words.

    Args:
        claims: The claims, in the order to show.

    Returns:
        A frame with columns ``claim, source, measured, holds, data``; ``holds`` reads
        "holds", "does not hold" or "not checked".
    """
    rows = []
    for c in claims:
        if not isinstance(c, Claim):
            raise TypeError(f"claims_table takes adlib.claims.Claim objects, got {type(c).__name__}")
        row = asdict(c)
        row["holds"] = VERDICTS[c.holds]
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


# --------------------------------------------------------------------------- helpers for verdicts


def number(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing (None, NaN or not a number)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def greater(a: Any, b: Any) -> bool | None:
    """``a > b`` for measured numbers; None (cannot be checked) when either is missing."""
    x, y = number(a), number(b)
    return None if x is None or y is None else x > y


def all_of(*verdicts: bool | None) -> bool | None:
    """True if every verdict holds, False if one fails, None if none fails but one is unknown."""
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def fmt(value: Any, digits: int = 3) -> str:
    """A measured number for the ``measured`` text (``"n/a"`` when missing)."""
    x = number(value)
    return "n/a" if x is None else f"{x:.{digits}g}"


def data_label(synthetic: bool, dataset: str, category: str | None = None) -> str:
    """The ``data`` column: which data a claim was measured on, e.g. "synthetic MVTec hazelnut stand-in"."""
    name = f"{dataset} {category}" if category else dataset
    return f"synthetic {name} stand-in" if synthetic else f"real {name}"


def show(table: pd.DataFrame) -> None:
    """Display a claims table in a notebook with every text in full (no ``...`` truncation)."""
    from IPython.display import display

    with pd.option_context("display.max_colwidth", None, "display.width", 250):
        display(table)
