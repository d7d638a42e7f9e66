"""Notebook 05: comparison tables built from the results files only (GUIDE section 2).

Everything here reads ``RESULTS_DIR/<notebook>/<method>-<dataset>-<category>-<run>.json`` and
the ``.scores.csv`` beside it, never another notebook's checkpoints or outputs. Plots, the
score explorer and the report's HTML fragments are in :mod:`adlib.pipelines.comparison_views`.

* :func:`load_comparison` collects every valid results file (invalid ones are listed, not fatal)
  and separates the results of the current report run from older ones (each results file
  carries its ``created`` time; :func:`adlib.report.run_report` records when it started in
  ``RESULTS_DIR/.report-run.json``). Older results are never mixed into the tables silently:
  they are listed with their date in :attr:`Collected.older`.
* :func:`aggregate_seeds`: runs that differ only in the seed (same method, data and settings
  hash in their ``run_id``) become one row with mean, standard deviation and ``n``; cells show the
  95 % bootstrap interval over test images where the results files carry one
  (:mod:`adlib.pipelines.comparison_stats`, which also builds the paired "A beats B" table).
* :func:`comparison_table`: one table per dataset and data kind (synthetic stand-in or real are
  never mixed), our rows first, then the seeds' published numbers (:mod:`adlib.published`) with
  their source. Published numbers are on the real datasets with the authors' settings: context,
  not targets.
* :func:`threshold_table`: honest (defect-free validation) versus ORACLE (best F1 on the test
  set) thresholds. The image-level oracle is recomputed here from the scores CSV for every method;
  the pixel-level oracle needs the maps, so it is shown only where a notebook stored it in its
  ``params`` (keys ``oracle_pixel_f1``/``oracle_pixel_threshold``); likewise the honest image
  threshold (``params["image_threshold"]``).
* :func:`rule_ratio_table` (from :mod:`adlib.pipelines.comparison_rules`): honest / ORACLE pixel
  F1 of every validation-only threshold rule, from ``params["threshold_rules"]``.
* :func:`roc_inputs` recomputes ROC curves from the scores CSVs; :func:`metric_heatmap` draws a
  method x metric heat map; :func:`write_fragments` writes the HTML fragments that
  :mod:`adlib.report` embeds (``RESULTS_DIR/comparison/*.html``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adlib import metrics, published, results
from adlib.pipelines.comparison_rules import rule_ratio_table, rule_rows
from adlib.pipelines.comparison_stats import aggregate_intervals, format_cell, interval_columns

__all__ = [
    "NOTEBOOK", "FRAGMENT_DIR", "PARAM_COLUMNS", "REPORT_RUN_FILE", "Collected", "load_comparison",
    "report_started", "aggregate_seeds", "format_mean_sd", "data_groups", "data_label",
    "published_rows", "comparison_table", "per_defect_table", "threshold_table", "older_table",
    "overview_table", "rule_ratio_table", "rule_rows",
]

NOTEBOOK = "05_comparison"
FRAGMENT_DIR = "comparison"
"""Sub-folder of RESULTS_DIR whose ``*.html`` files the report runner embeds (adlib.report)."""
PARAM_COLUMNS: tuple[str, ...] = (
    "image_threshold", "image_threshold_source", "oracle_image_threshold", "oracle_image_f1",
    "oracle_pixel_threshold", "oracle_pixel_f1",
)
"""Optional threshold details a notebook may store in its results ``params`` (see module doc)."""
REPORT_RUN_FILE = ".report-run.json"
"""Written into RESULTS_DIR by :func:`adlib.report.run_report` when a report starts."""
_ID = ["data", "category", "method", "source", "profile", "threshold_source"]
_GROUP = ["notebook", "method", "dataset", "category", "synthetic", "profile", "settings"]
"""What makes runs the same experiment: everything but the seed."""


@dataclass
class Collected:
    """All results files found under a RESULTS_DIR."""

    results_dir: Path
    frame: pd.DataFrame
    """One row per results file of the current run: the GUIDE keys, ``file``, ``data``,
    ``settings`` (the settings hash of ``run_id``) and :data:`PARAM_COLUMNS`."""
    skipped: list[str] = field(default_factory=list)
    """Messages for files that are not valid results files (ignored)."""
    older: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Results files written before the current report run started (same columns)."""
    since: str | None = None
    """Start of the current report run (ISO time), or None: every file counts as current."""

    def others(self, notebook: str = NOTEBOOK) -> pd.DataFrame:
        """Rows written by the other notebooks (not ``notebook``)."""
        return self.frame[self.frame["notebook"] != notebook].reset_index(drop=True)

    def summary(self) -> str:
        """One line per notebook: how many results files it left."""
        if self.frame.empty:
            return f"No results files under {self.results_dir}."
        counts = self.frame.groupby("notebook").size()
        lines = [f"{n}: {c} results file(s)" for n, c in counts.items()]
        if len(self.older):
            lines.append(f"{len(self.older)} older results file(s) from before this report run "
                         f"(started {self.since}) are not in the tables: see older_table()")
        if self.skipped:
            lines.append(f"{len(self.skipped)} file(s) skipped (not valid results files)")
        return "\n".join(lines)


def data_label(synthetic: bool) -> str:
    """``"synthetic stand-in"`` or ``"real"``."""
    return "synthetic stand-in" if synthetic else "real"


def report_started(results_dir: str | Path) -> str | None:
    """When the report run that writes into ``results_dir`` started (None outside a report)."""
    marker = Path(results_dir) / REPORT_RUN_FILE
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _settings_key(run_id: Any, file: str) -> str:
    """The settings hash of a run id (``s0-3f9a1c`` -> ``3f9a1c``); the file for older files."""
    if isinstance(run_id, str) and "-" in run_id:
        return run_id.split("-", 1)[1]
    return f"legacy:{Path(file).stem}"


def load_comparison(results_dir: str | Path, *, since: str | None = "auto") -> Collected:
    """Collect the results files of ``RESULTS_DIR/<notebook>/`` (via :func:`adlib.results.collect_results`).

    Only files at the GUIDE depth whose folder is their ``notebook`` count; invalid files are
    skipped and listed in :attr:`Collected.skipped`. A missing folder gives an empty frame.

    Args:
        results_dir: the RESULTS_DIR shared by the notebooks.
        since: ISO time; files created before it (or without a creation time) go to
            :attr:`Collected.older`. ``"auto"``: the start of the report run recorded in
            ``RESULTS_DIR/.report-run.json`` (None when no report wrote there). None: keep all.
    """
    root = Path(results_dir)
    columns = [*results.RESULT_KEYS, "file", "data", "settings", *PARAM_COLUMNS]
    since = report_started(root) if since == "auto" else since
    if not root.is_dir():
        return Collected(root, pd.DataFrame(columns=columns), older=pd.DataFrame(columns=columns), since=since)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = results.collect_results(root, errors="skip")
    skipped = [str(w.message) for w in caught if "checkpoints" not in str(w.message)]
    if not df.empty:
        files = df["file"].map(Path)
        at_depth = files.map(lambda p: p.parent.parent == root) & (
            files.map(lambda p: p.parent.name) == df["notebook"])
        df = df[at_depth].reset_index(drop=True)
    df["data"] = df["synthetic"].map(lambda s: data_label(bool(s)))
    df["settings"] = [_settings_key(r, f) for r, f in zip(df["run_id"], df["file"], strict=True)]
    for key in PARAM_COLUMNS:
        df[key] = [p.get(key) if isinstance(p, Mapping) else None for p in df["params"]]
    df = df.loc[:, columns + [c for c in df.columns if c not in columns]]
    if since is None:
        return Collected(root, df, skipped, older=df.iloc[0:0].copy(), since=None)
    start = _parse_time(since)
    current = df["created"].map(lambda c: c is not None and _parse_time(c) >= start)
    return Collected(root, df[current].reset_index(drop=True), skipped,
                     older=df[~current].reset_index(drop=True), since=since)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def overview_table(df: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """Every experiment of ``df`` in one table: metrics as mean ± sd over seeds [95 % interval], ``n``, ``seeds``.

    The report's index shows it for the current run (no published rows, every dataset).
    """
    cols = ["notebook", "method", "dataset", "category", "data", "profile", "n", "seeds",
            *results.METRIC_KEYS, "threshold_source"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    agg = aggregate_seeds(df)
    table = format_mean_sd(agg, results.METRIC_KEYS, decimals)
    table["seeds"] = table["seeds"].map(lambda s: ", ".join(map(str, s)))
    return table.loc[:, cols].sort_values(["dataset", "category", "notebook", "method"]).reset_index(drop=True)


def older_table(collected: Collected) -> pd.DataFrame:
    """The older results files (not in the tables), with their date: what a reader should know."""
    df = collected.older
    if df.empty:
        return pd.DataFrame(columns=["notebook", "method", "dataset", "category", "seed", "run_id", "created"])
    out = df.loc[:, ["notebook", "method", "dataset", "category", "data", "seed", "run_id", "created"]].copy()
    out["created"] = out["created"].fillna("before run ids (undated)")
    return out.sort_values(["notebook", "method", "created"]).reset_index(drop=True)


def aggregate_seeds(df: pd.DataFrame, metric_keys: Sequence[str] = results.METRIC_KEYS) -> pd.DataFrame:
    """One row per experiment (everything but the seed): metric means, ``<metric>_sd`` and ``n``.

    ``sd`` is the sample standard deviation (ddof = 1), NaN for a single run; ``<metric>_lo/_hi``
    are the runs' 95 % bootstrap bounds averaged (NaN without intervals). The other columns
    are those of the most recent run of the group (its ``file``, thresholds, ...); ``seeds`` lists
    the seeds averaged.
    """
    if df.empty:
        return df.assign(n=pd.Series(dtype=int), seeds=pd.Series(dtype=object))
    rows = []
    for _, group in df.groupby(_GROUP, sort=False, dropna=False):
        latest = group.sort_values("created", na_position="first").iloc[-1].to_dict()
        for key in metric_keys:
            values = pd.to_numeric(group[key], errors="coerce")
            latest[key] = values.mean() if values.notna().any() else None
            latest[f"{key}_sd"] = values.std(ddof=1) if values.notna().sum() > 1 else np.nan
        latest.update(aggregate_intervals(group, metric_keys))
        latest["n"] = len(group)
        latest["seeds"] = sorted(int(s) for s in group["seed"])
        rows.append(latest)
    return pd.DataFrame(rows).reset_index(drop=True)


def format_mean_sd(table: pd.DataFrame, metric_keys: Sequence[str], decimals: int = 3) -> pd.DataFrame:
    """Metric cells as ``"0.912 ± 0.013"`` where ``n > 1``, with `` [lo, hi]`` (the 95 % bootstrap
    interval, :func:`adlib.pipelines.comparison_stats.format_cell`) where known; plain numbers where
    there is neither. Drops the ``_sd``, ``_lo`` and ``_hi`` columns."""
    out = table.copy()
    multi = out["n"].fillna(1).astype(int) > 1 if "n" in out else pd.Series(False, index=out.index)
    for key in metric_keys:
        sd, lo, hi = (out[c] if c in out else pd.Series(np.nan, index=out.index)
                      for c in (f"{key}_sd", f"{key}_lo", f"{key}_hi"))
        if key not in out or f"{key}_sd" not in out:
            continue
        mean = pd.to_numeric(out[key], errors="coerce")
        cells = [format_cell(*v, decimals) for v in zip(mean, sd, lo, hi, multi, strict=True)]
        out[key] = (pd.Series(cells, index=out.index, dtype=object) if any(isinstance(c, str) for c in cells)
                    else mean.round(decimals))
    extra = [f"{k}_{end}" for k in metric_keys for end in ("sd", "lo", "hi")]
    return out.drop(columns=[c for c in extra if c in out])


def data_groups(df: pd.DataFrame) -> list[tuple[str, bool]]:
    """The (dataset, synthetic) pairs present, real data first within a dataset."""
    if df.empty:
        return []
    pairs = {(str(d), bool(s)) for d, s in zip(df["dataset"], df["synthetic"], strict=True)}
    return sorted(pairs, key=lambda p: (p[0], p[1]))


# --------------------------------------------------------------------------- tables


def _published_label(seed: str, source: str) -> str:
    """``PUBLISHED: seed 001, <table>`` for a seed; ``PUBLISHED: <paper, table>`` for a paper."""
    return f"PUBLISHED: seed {seed}, {source}" if str(seed).isdigit() else f"PUBLISHED: {source}"


_PUBLISHED_RENAME = {"f1": "f1 (level unstated)", "precision": "precision (level unstated)",
                     "recall": "recall (level unstated)"}


def published_rows(dataset: str, categories: Sequence[str] | None = None, *,
                   per_defect: bool = False) -> pd.DataFrame:
    """The seeds' numbers for ``dataset`` as table rows (one per method/category/defect).

    Args:
        dataset: ``"mvtec"``, ``"dagm"``, ...
        categories: keep only these categories (None: all).
        per_defect: rows broken down by defect type (seed 000) instead of overall rows.

    Returns:
        Columns ``data, category, method, defect, source, note`` plus one column per published
        metric (results-file names where the level matches; ``(level unstated)`` otherwise).
    """
    pub = published.published_table(dataset=dataset)
    if categories is not None:
        pub = pub[pub["category"].isin(list(categories))]
    pub = pub[pub["defect"].notna()] if per_defect else pub[pub["defect"].isna()]
    if pub.empty:
        return pd.DataFrame(columns=["data", "category", "method", "defect", "source", "note"])
    pub = pub.assign(source=[_published_label(s, src) for s, src in zip(pub["seed"], pub["source"], strict=True)],
                     metric=pub["metric"].map(lambda m: _PUBLISHED_RENAME.get(m, m)),
                     defect=pub["defect"].fillna("all"))
    wide = pub.pivot_table(index=["category", "method", "defect", "source", "note"], columns="metric",
                           values="value", aggfunc="first", sort=False).reset_index()
    wide.columns.name = None
    wide.insert(0, "data", "real (published)")
    return wide


def comparison_table(
    df: pd.DataFrame,
    dataset: str,
    synthetic: bool,
    *,
    metrics: Sequence[str] = results.METRIC_KEYS,
    with_published: bool = True,
    decimals: int = 3,
) -> pd.DataFrame:
    """Method x metrics for one dataset and one data kind, published numbers below ours.

    Our rows: ``source`` is the notebook, ``data`` says synthetic stand-in or real; runs that
    differ only in the seed are one row, ``"mean ± sd"`` with their number ``n``, followed by the
    95 % bootstrap interval ``[lo, hi]`` where the results carry one (plain numbers otherwise). Published rows: ``source`` starts with ``PUBLISHED`` and names seed and
    table; ``data`` is ``real (published)``. Metrics we did not compute (or that a paper does not
    give) are NaN.
    """
    ours = df[(df["dataset"] == dataset) & (df["synthetic"].astype(bool) == bool(synthetic))]
    ours = aggregate_seeds(ours, metrics)
    ours = ours.assign(source=ours["notebook"]) if not ours.empty else ours.assign(source=[])
    cols = _ID + list(metrics) + [f"{m}_sd" for m in metrics] + interval_columns(metrics) + ["n"]
    table = ours.reindex(columns=cols).sort_values(["category", "method", "source"])
    table = format_mean_sd(table, metrics, decimals)
    if with_published and not ours.empty:
        pub = published_rows(dataset, sorted(set(ours["category"])))
        if not pub.empty:
            pub = pub.drop(columns=["defect", "note"]).assign(profile="", threshold_source="")
            table = pd.concat([table, pub], ignore_index=True, sort=False)
    table = table.reset_index(drop=True)
    for col in table.columns.difference([*_ID, "n"]):
        if not any(isinstance(v, str) for v in table[col]):
            table[col] = pd.to_numeric(table[col], errors="coerce").round(decimals)
    table["n"] = pd.to_numeric(table["n"], errors="coerce").astype("Int64")
    return table


def published_notes(dataset: str, categories: Sequence[str] | None = None) -> list[str]:
    """The published rows' notes (``seed NNN: note``), once each, for a caption."""
    pub = published.published_table(dataset=dataset)
    if categories is not None:
        pub = pub[pub["category"].isin(list(categories))]
    seen = dict.fromkeys(f"{'seed ' + s if str(s).isdigit() else s}: {n}"
                         for s, n in zip(pub["seed"], pub["note"], strict=True) if n)
    return list(seen)


def per_defect_table(df: pd.DataFrame, dataset: str, category: str, synthetic: bool,
                     decimals: int = 3) -> pd.DataFrame:
    """Pixel precision/recall/F1 per defect type (at each method's validation threshold),
    with the seeds' per-defect numbers below (PUBLISHED, real data)."""
    sel = df[(df["dataset"] == dataset) & (df["category"] == category)
             & (df["synthetic"].astype(bool) == bool(synthetic))]
    rows = []
    for _, r in sel.iterrows():
        for defect, vals in (r["per_defect"] or {}).items():
            rows.append({"data": r["data"], "method": r["method"], "source": r["notebook"],
                         "threshold_source": r["threshold_source"], "defect": defect, **vals})
    table = pd.DataFrame(rows, columns=["data", "method", "source", "threshold_source", "defect",
                                        *results.PER_DEFECT_KEYS])
    pub = published_rows(dataset, [category], per_defect=True)
    if not table.empty and not pub.empty:
        pub = pub.drop(columns=["category", "note"]).assign(threshold_source="")
        table = pd.concat([table, pub], ignore_index=True, sort=False)
    for col in results.PER_DEFECT_KEYS:
        if col in table:
            table[col] = pd.to_numeric(table[col], errors="coerce").round(decimals)
    return table.sort_values(["defect", "source", "method"], kind="stable").reset_index(drop=True)


def _opt(value: Any) -> Any:
    """``None`` for a missing value (None or NaN, as pandas stores absent params)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _image_f1(scores: pd.DataFrame, threshold: float | None) -> float | None:
    if _opt(threshold) is None:
        return None
    return metrics.image_prf(scores["score"].to_numpy(float), scores["label"].to_numpy(int), float(threshold)).f1


def _oracle_image(scores: pd.DataFrame) -> tuple[float | None, float | None]:
    from adlib.thresholds import oracle_best_f1_threshold

    y = scores["label"].to_numpy(int)
    if y.min() == y.max():
        return None, None
    thr = oracle_best_f1_threshold(scores["score"].to_numpy(float), y)
    return thr.value, _image_f1(scores, thr.value)


def threshold_table(df: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """Honest (validation) versus ORACLE (test) thresholds, one row per results file.

    Image level: F1 at the notebook's validation image threshold (``params["image_threshold"]``,
    recomputed from the scores CSV; NaN when the notebook did not store one) and the ORACLE
    best F1 recomputed from the scores CSV. Pixel level: F1 at the validation threshold from the
    results file, and the ORACLE pixel F1 where the notebook stored it (NaN otherwise).
    ``gap`` columns: oracle minus honest, how much F1 the threshold choice alone costs.
    """
    rows = []
    for _, r in df.iterrows():
        scores = results.load_scores(r["file"])
        img_thr = _opt(r.get("image_threshold"))
        oracle_pix, pix_f1 = _opt(r.get("oracle_pixel_f1")), _opt(r["pixel_f1"])
        o_thr, o_f1 = _oracle_image(scores)
        honest_img = _image_f1(scores, img_thr)
        rows.append({
            "data": r["data"], "dataset": r["dataset"], "category": r["category"],
            "method": r["method"], "source": r["notebook"], "seed": r["seed"],
            "image threshold source": (_opt(r.get("image_threshold_source"))
                                       or ("not reported" if img_thr is None else "")),
            "image_f1 (validation thr.)": honest_img,
            "ORACLE image_f1 (test)": o_f1,
            "image gap": None if honest_img is None or o_f1 is None else o_f1 - honest_img,
            "pixel threshold source": _opt(r["threshold_source"]) or "no pixel threshold",
            "pixel_f1 (validation thr.)": pix_f1,
            "ORACLE pixel_f1 (test)": oracle_pix,
            "pixel gap": None if pix_f1 is None or oracle_pix is None else oracle_pix - pix_f1,
        })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    num = [c for c in out.columns if "f1" in c or "gap" in c]
    out[num] = out[num].apply(pd.to_numeric, errors="coerce").round(decimals)
    return out.sort_values(["data", "dataset", "category", "method"]).reset_index(drop=True)
