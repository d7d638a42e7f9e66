"""Notebook 05: how far each validation-only pixel-threshold rule lands from the ORACLE.

Read from the results files only: every model notebook stores, for maps with masks, each rule of
:mod:`adlib.threshold_rules` with its threshold and test pixel F1 in ``params["threshold_rules"]``,
the rule ``"auto"`` picked on the validation halves in ``params["threshold_rule_auto"]`` and the
ORACLE (best test F1) in ``params["oracle_pixel_f1"]``. The thresholds were fixed on defect-free
validation images before any mask was looked at; the ratio honest / ORACLE says how much of the
reachable pixel F1 a rule keeps (1.0: the threshold choice costs nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from adlib.threshold_rules import RULES

__all__ = ["RULE_COLUMNS", "RULES_CAPTION", "TARGET_RATIO", "rule_rows", "rule_ratio_table"]

RULE_COLUMNS: tuple[str, ...] = (*RULES, "auto")
TARGET_RATIO = 0.7
"""The course's goal: honest pixel F1 at least this share of the ORACLE pixel F1."""
RULES_CAPTION = (
    "Honest / ORACLE pixel F1 per validation-only threshold rule (mean over seeds). Each rule's "
    "threshold comes from defect-free validation maps only; the ORACLE is the best F1 on the test "
    "set, a ceiling no honest rule can beat. 'results' is the rule the results file reports; 'auto' "
    "is the rule picked on the validation maps (best transfer of its false-alarm rate between two "
    f"halves of them). 'meets {TARGET_RATIO:g}': the results' ratio reaches {TARGET_RATIO:g}."
)
_KEY = ["data", "dataset", "category", "method", "notebook"]


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def rule_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (results file, rule): threshold, honest and ORACLE pixel F1, their ratio.

    Files without ``params["threshold_rules"]`` (no masks, or written before the rules were
    recorded) give no rows.
    """
    rows = []
    for _, r in df.iterrows():
        params = r.get("params")
        table = params.get("threshold_rules") if isinstance(params, Mapping) else None
        if not isinstance(table, Mapping):
            continue
        oracle = _num(params.get("oracle_pixel_f1"))
        for rule, entry in table.items():
            f1 = _num(entry.get("pixel_f1"))
            rows.append({
                **{k: r.get(k) for k in _KEY}, "seed": r.get("seed"), "rule": rule,
                "threshold": _num(entry.get("threshold")), "source": entry.get("source"),
                "pixel_f1": f1, "pixel_recall": _num(entry.get("pixel_recall")),
                "oracle_pixel_f1": oracle, "ratio": f1 / oracle if oracle > 0 else float("nan"),
                "transfer_error": _num(entry.get("transfer_error")),
                "auto_pick": params.get("threshold_rule_auto"),
            })
        results_f1 = _num(r.get("pixel_f1"))
        rows.append({**{k: r.get(k) for k in _KEY}, "seed": r.get("seed"), "rule": "results",
                     "threshold": _num(r.get("threshold")), "source": r.get("threshold_source"),
                     "pixel_f1": results_f1, "pixel_recall": _num(r.get("pixel_recall")),
                     "oracle_pixel_f1": oracle,
                     "ratio": results_f1 / oracle if oracle > 0 else float("nan"),
                     "transfer_error": float("nan"), "auto_pick": params.get("threshold_rule_auto")})
    columns = [*_KEY, "seed", "rule", "threshold", "source", "pixel_f1", "pixel_recall",
               "oracle_pixel_f1", "ratio", "transfer_error", "auto_pick"]
    return pd.DataFrame(rows, columns=columns)


def rule_ratio_table(df: pd.DataFrame, *, decimals: int = 3, target: float = TARGET_RATIO) -> pd.DataFrame:
    """One row per experiment (seeds averaged): honest / ORACLE pixel F1 of every rule.

    Columns: the experiment, ``n`` (seeds), ``ORACLE pixel_f1``, ``results`` (the reported rule's
    ratio), one column per rule of :data:`RULE_COLUMNS`, ``auto picks`` (the rules ``"auto"``
    chose, over the seeds) and ``meets <target>`` (the results' ratio reaches ``target``).
    """
    long = rule_rows(df)
    cols = [*_KEY, "n", "ORACLE pixel_f1", "results", *RULE_COLUMNS, "auto picks", f"meets {target:g}"]
    if long.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, group in long.groupby(_KEY, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(_KEY, key, strict=True))
        row["n"] = int(group["seed"].nunique())
        row["ORACLE pixel_f1"] = group["oracle_pixel_f1"].mean()
        for rule in ("results", *RULE_COLUMNS):
            values = group.loc[group["rule"] == rule, "ratio"]
            row[rule] = values.mean() if values.notna().any() else np.nan
        picks = sorted({str(p) for p in group["auto_pick"].dropna()})
        row["auto picks"] = ", ".join(picks)
        row[f"meets {target:g}"] = bool(row["results"] >= target) if not np.isnan(row["results"]) else None
        out.append(row)
    table = pd.DataFrame(out, columns=cols)
    num = ["ORACLE pixel_f1", "results", *RULE_COLUMNS]
    table[num] = table[num].astype(float).round(decimals)
    return table.sort_values(["data", "dataset", "category", "method"]).reset_index(drop=True)
