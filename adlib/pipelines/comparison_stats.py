"""Uncertainty in notebook 05's tables: bootstrap intervals in the cells, and "A beats B".

* Cells: a results file may carry 95 % bootstrap intervals over its test images (``ci95``,
  flattened by :func:`adlib.results.collect_results` into ``<metric>_lo`` / ``<metric>_hi``).
  One run shows ``0.982 [0.951, 0.998]``. Several seeds of one experiment show
  ``0.975 ± 0.008 [0.941, 0.996]``: mean ± sd over the seeds (how much training varies), then the
  per-seed interval averaged bound by bound (how much a single run's number would move with another
  draw of test images). The two answer different questions and are not combined.
* :func:`paired_table`: for every two methods that scored the SAME test images (same dataset,
  category, data kind, and the same image paths and labels in their scores CSVs), a paired bootstrap
  (:func:`adlib.bootstrap.paired_bootstrap`) of the difference in image AUROC: its 95 % interval and
  the share of resamples in which A beats B.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from adlib import bootstrap, results

__all__ = ["interval_columns", "aggregate_intervals", "format_cell", "leading_number", "paired_table",
           "PAIRED_CAPTION", "INTERVAL_NOTE"]

INTERVAL_NOTE = (
    "[lo, hi]: 95 % bootstrap interval over the test images (1000 resamples of the images, stratified by "
    "label; pixel metrics resample whole images); with several seeds, mean ± sd over the seeds followed by "
    "the per-seed interval averaged bound by bound."
)
PAIRED_CAPTION = (
    "'A beats B', paired bootstrap: for two methods that scored the same test images, the images are "
    "resampled (1000 times, stratified by label) and BOTH methods are scored on each resample, so the "
    "difference in image AUROC keeps what the two share (easy and hard images). A is the method with "
    "the higher observed AUROC. If the 95 % interval of A - B excludes 0 (and P(A > B) is near 1), the "
    "ranking is unlikely to be an accident of this test set; an interval straddling 0 means this test set "
    "cannot tell them apart. It says nothing about other data, seeds or settings."
)


def interval_columns(metric_keys: Sequence[str]) -> list[str]:
    """``[<metric>_lo, <metric>_hi, ...]`` for ``metric_keys``."""
    return [f"{k}_{end}" for k in metric_keys for end in ("lo", "hi")]


def aggregate_intervals(group: pd.DataFrame, metric_keys: Sequence[str]) -> dict[str, float]:
    """Per-seed interval bounds averaged over the runs of one experiment (NaN where none has one)."""
    out: dict[str, float] = {}
    for col in interval_columns(metric_keys):
        values = pd.to_numeric(group[col], errors="coerce") if col in group else pd.Series(dtype=float)
        out[col] = float(values.mean()) if values.notna().any() else np.nan
    return out


def format_cell(mean: Any, sd: Any, lo: Any, hi: Any, many: bool, decimals: int = 3) -> Any:
    """One table cell: ``mean``, ``mean ± sd`` (several seeds) and `` [lo, hi]`` when known.

    A plain (rounded) number when there is neither an sd to show nor an interval.
    """
    if mean is None or pd.isna(mean):
        return np.nan
    text = f"{mean:.{decimals}f}"
    has_sd = many and sd is not None and pd.notna(sd)
    has_ci = lo is not None and hi is not None and pd.notna(lo) and pd.notna(hi)
    if not has_sd and not has_ci:
        return round(float(mean), decimals)
    if has_sd:
        text += f" ± {sd:.{decimals}f}"
    if has_ci:
        text += f" [{lo:.{decimals}f}, {hi:.{decimals}f}]"
    return text


def leading_number(value: Any) -> Any:
    """``"0.912 ± 0.013 [0.88, 0.94]"`` -> 0.912 (the point estimate of a formatted cell)."""
    if isinstance(value, str):
        return value.split(" ±")[0].split(" [")[0]
    return value


def _label(row: Mapping[str, Any]) -> str:
    return f"{row['method']} ({str(row['notebook'])[:2]}, {row['profile']})"


def _pairs(group: pd.DataFrame, key: Sequence[str]) -> list[tuple[pd.Series, pd.Series]]:
    """Results files to compare: per pair of experiments, one pair per seed both ran (else their latest)."""
    experiments = [g.sort_values("created", na_position="first") for _, g in group.groupby(list(key), sort=True,
                                                                                           dropna=False)]
    out = []
    for a, b in combinations(experiments, 2):
        common = sorted(set(a["seed"]) & set(b["seed"]))
        if common:
            out += [(a[a["seed"] == s].iloc[-1], b[b["seed"] == s].iloc[-1]) for s in common]
        else:
            out.append((a.iloc[-1], b.iloc[-1]))
    return out


def paired_table(df: pd.DataFrame, *, metric: str = "image_auroc", n_boot: int = bootstrap.DEFAULT_N_BOOT,
                 seed: int = bootstrap.DEFAULT_SEED, decimals: int = 3,
                 key: Sequence[str] = ("notebook", "method", "profile", "settings")) -> pd.DataFrame:
    """One row per pair of methods that scored the same test images: A - B with its 95 % interval.

    Args:
        df: results frame (:func:`adlib.pipelines.comparison.load_comparison`), one row per file.
        metric: ``"image_auroc"`` or ``"image_aupr"`` (recomputed from the scores CSVs).
        n_boot, seed: resamples and seed of the paired bootstrap.
        key: what makes two rows different experiments within one (dataset, category, data kind).

    Returns:
        Columns ``data, dataset, category, A, B, seed, n images, <metric> A, <metric> B, A - B,
        95 % CI of A - B, P(A > B)``. Pairs whose scores CSVs list different test images (or disagree
        on a label) are left out; their reasons are in ``table.attrs["skipped"]``.
    """
    cols = ["data", "dataset", "category", "A", "B", "seed", "n images", f"{metric} A", f"{metric} B",
            "A - B", "95 % CI of A - B", "P(A > B)"]
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    cache: dict[str, pd.DataFrame] = {}

    def scores(file: str) -> pd.DataFrame:
        if file not in cache:
            cache[file] = results.load_scores(file)
        return cache[file]

    if df.empty:
        return _with_skipped(pd.DataFrame(columns=cols), skipped)
    for (dataset, category, _synthetic), group in df.groupby(["dataset", "category", "synthetic"], sort=True):
        for ra, rb in _pairs(group, key):
            name_a, name_b = _label(ra), _label(rb)
            try:
                sa, sb, labels = bootstrap.paired_from_scores(scores(ra["file"]), scores(rb["file"]),
                                                              name_a=name_a, name_b=name_b)
                if labels.min() == labels.max():
                    raise ValueError(f"{name_a} / {name_b}: the test images hold one class only.")
            except ValueError as exc:
                skipped.append(f"{dataset}/{category}: {exc}")
                continue
            res = bootstrap.paired_bootstrap(sa, sb, labels, metric=metric, n_boot=n_boot, seed=seed)
            if res.difference < 0:  # A is the better one on the full test set
                (ra, rb), (name_a, name_b) = (rb, ra), (name_b, name_a)
                res = bootstrap.paired_bootstrap(sb, sa, labels, metric=metric, n_boot=n_boot, seed=seed)
            rows.append({
                "data": ra["data"], "dataset": dataset, "category": category, "A": name_a, "B": name_b,
                "seed": str(ra["seed"]) if ra["seed"] == rb["seed"] else f"{ra['seed']} vs {rb['seed']}",
                "n images": res.n_images, f"{metric} A": round(res.a, decimals), f"{metric} B": round(res.b, decimals),
                "A - B": round(res.difference, decimals),
                "95 % CI of A - B": f"[{res.ci[0]:.{decimals}f}, {res.ci[1]:.{decimals}f}]",
                "P(A > B)": round(res.p_a_beats_b, decimals),
            })
    table = pd.DataFrame(rows, columns=cols)
    return _with_skipped(table.sort_values(["data", "dataset", "category", "A - B"], ascending=[True, True, True, False])
                         .reset_index(drop=True), skipped)


def _with_skipped(table: pd.DataFrame, skipped: list[str]) -> pd.DataFrame:
    table.attrs["skipped"] = list(skipped)
    return table
