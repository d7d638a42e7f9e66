"""Notebook 05's views: heat maps, ROC inputs, the score explorer and the report's HTML fragments
(including the paired "A beats B" table of :mod:`adlib.pipelines.comparison_stats`).

The numbers come from :mod:`adlib.pipelines.comparison` (results files only).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from adlib import metrics, published, results
from adlib.pipelines.comparison import (
    FRAGMENT_DIR,
    _opt,
    _oracle_image,
    comparison_table,
    data_groups,
    data_label,
    per_defect_table,
    published_notes,
    threshold_table,
)
from adlib.pipelines.comparison_rules import RULES_CAPTION, rule_ratio_table
from adlib.pipelines.comparison_stats import (
    INTERVAL_NOTE,
    PAIRED_CAPTION,
    leading_number,
    paired_table,
)

__all__ = ["Fragment", "roc_inputs", "roc_target", "metric_heatmap", "score_explorer",
           "write_fragments", "dataset_fragments", "build_fragments", "paired_fragment", "PAIRED_FRAGMENT",
           "THRESHOLD_CAPTION", "OLDER_CAPTION"]

PAIRED_FRAGMENT = "91_paired_a_beats_b"
"""File stem of the paired-bootstrap fragment (the report's index links to it)."""


# --------------------------------------------------------------------------- plots


def roc_target(df: pd.DataFrame) -> tuple[str, str, bool] | None:
    """The (dataset, category, synthetic) with the most methods (ties: real data first)."""
    if df.empty:
        return None
    counts = df.groupby(["dataset", "category", "synthetic"]).size().reset_index(name="n")
    counts = counts.sort_values(["n", "synthetic", "dataset", "category"], ascending=[False, True, True, True])
    top = counts.iloc[0]
    return str(top["dataset"]), str(top["category"]), bool(top["synthetic"])


def roc_inputs(df: pd.DataFrame, dataset: str, category: str, synthetic: bool) -> dict[str, tuple]:
    """``{label: (labels, scores)}`` from the scores CSVs of every method on one dataset,
    ready for :func:`adlib.viz.roc_curves`."""
    sel = df[(df["dataset"] == dataset) & (df["category"] == category)
             & (df["synthetic"].astype(bool) == bool(synthetic))].sort_values(["notebook", "method"])
    out: dict[str, tuple] = {}
    for _, r in sel.iterrows():
        s = results.load_scores(r["file"])
        out[f"{r['method']} [{r['notebook'][:2]}, seed {r['seed']}, n={len(s)}]"] = (s["label"].to_numpy(int),
                                                                   s["score"].to_numpy(float))
    return out


def _leading_number(column: pd.Series) -> pd.Series:
    """``"0.912 ± 0.013 [0.88, 0.94]"`` -> 0.912 (the point estimate of a formatted cell); numbers unchanged."""
    return pd.to_numeric(column.map(leading_number), errors="coerce")


def metric_heatmap(table: pd.DataFrame, metric_keys: Sequence[str] = results.METRIC_KEYS, *,
                   title: str = "", label_cols: Sequence[str] = ("category", "method", "source")) -> Figure:
    """Heat map rows = table rows (category / method / source), columns = metrics in [0, 1].

    Seed-averaged cells show their mean, cells with an interval their point estimate. Missing values are left blank (grey) and written as ``n/a``.
    """
    cols = [m for m in metric_keys if m in table.columns]
    values = table[cols].apply(_leading_number).to_numpy(float) if cols else np.zeros((0, 0))
    labels = [" / ".join(str(r[c]) for c in label_cols if c in table.columns) for _, r in table.iterrows()]
    fig = Figure(figsize=(1.1 * max(len(cols), 3) + 3.5, 0.38 * max(len(labels), 2) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")
    im = ax.imshow(np.ma.masked_invalid(values), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="k" if np.isnan(v) or v > 0.6 else "w")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def score_explorer(df: pd.DataFrame, *, static: bool | None = None, max_static: int = 6):
    """Image-level thresholding over the scores CSVs of the other notebooks' methods.

    Interactive: pick a method (dropdown), slide the threshold, read precision/recall/F1 on the
    test images (a teaching device: picking the threshold on test data is what the ORACLE
    does). Static fallback (headless runs): score histograms of up to ``max_static`` methods
    with the validation threshold (where stored) and the ORACLE threshold marked.
    """
    from adlib import viz
    from adlib.explorer import interactive_frontend

    if df.empty:
        return None
    use_widget = (not static) if static is not None else interactive_frontend()
    entries = {f"{r['method']} | {r['dataset']}/{r['category']} | {r['data']} [{r['notebook'][:2]}, seed {r['seed']}]": r
               for _, r in df.iterrows()}
    if not use_widget:
        keys = list(entries)[:max_static]
        ncols = min(3, len(keys))
        nrows = int(np.ceil(len(keys) / ncols))
        fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows), layout="constrained")
        for k, key in enumerate(keys):
            r = entries[key]
            s = results.load_scores(r["file"])
            marks = {}
            if _opt(r.get("image_threshold")) is not None:
                marks["validation"] = float(r["image_threshold"])
            o_thr, _ = _oracle_image(s)
            if o_thr is not None:
                marks["ORACLE (test)"] = o_thr
            viz.score_distributions(s["score"], s["label"], marks, kde=False, title=key,
                                    ax=fig.add_subplot(nrows, ncols, k + 1))
        return fig

    import ipywidgets as widgets
    from IPython.display import display

    pick = widgets.Dropdown(options=list(entries), description="method", layout=widgets.Layout(width="80%"))
    slider = widgets.FloatSlider(description="threshold", continuous_update=False, readout_format=".4g",
                                 layout=widgets.Layout(width="80%"))
    label = widgets.HTML()
    out = widgets.Output()

    def load(change: Any = None) -> None:
        s = results.load_scores(entries[pick.value]["file"])
        lo, hi = float(s["score"].min()), float(s["score"].max())
        hi = max(hi, lo + 1e-9)
        slider.unobserve(redraw, names="value")
        if lo > slider.max:  # keep min <= max while moving the range
            slider.max, slider.min = hi, lo
        else:
            slider.min, slider.max = lo, hi
        slider.step = (hi - lo) / 200
        slider.value = float(np.median(s["score"]))
        slider.observe(redraw, names="value")
        redraw()

    def redraw(change: Any = None) -> None:
        r = entries[pick.value]
        s = results.load_scores(r["file"])
        prf = metrics.image_prf(s["score"].to_numpy(float), s["label"].to_numpy(int), float(slider.value))
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        label.value = (f"<b>image F1 = {fmt(prf.f1)}</b> (precision {fmt(prf.precision)}, recall "
                       f"{fmt(prf.recall)}) on the TEST images at threshold {slider.value:.4g}")
        fig = viz.score_distributions(s["score"], s["label"], {"slider": float(slider.value)}, kde=False,
                                      title=pick.value)
        with out:
            out.clear_output(wait=True)
            display(fig)

    pick.observe(load, names="value")
    slider.observe(redraw, names="value")
    load()
    return widgets.VBox([pick, slider, label, out])


# --------------------------------------------------------------------------- HTML fragments


@dataclass
class Fragment:
    """One HTML fragment for the report: a table and the sentence that explains it."""

    name: str
    """File stem, e.g. ``"1_mvtec_synthetic"`` (the report shows it as a heading)."""
    caption: str
    frame: pd.DataFrame | None = None


def _fragment_html(fragment: Fragment) -> str:
    parts = [f'<p class="caption">{html.escape(fragment.caption)}</p>']
    if fragment.frame is not None and not fragment.frame.empty:
        parts.append(fragment.frame.to_html(index=False, na_rep="n/a", border=0, float_format=lambda v: f"{v:.3f}"))
    return "\n".join(parts) + "\n"


def write_fragments(results_dir: str | Path, fragments: Sequence[Fragment]) -> list[Path]:
    """Write ``RESULTS_DIR/comparison/<name>.html`` for each fragment, replacing older ones.

    The folder belongs to this notebook: stale ``*.html`` files from earlier runs are removed
    first, so the report never shows a table of a previous run.
    """
    folder = Path(results_dir) / FRAGMENT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.html"):
        old.unlink()
    paths = []
    for frag in fragments:
        path = folder / f"{frag.name}.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(_fragment_html(frag), encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


def dataset_fragments(df: pd.DataFrame, *, start: int = 1) -> tuple[list[Fragment], dict[tuple[str, bool], pd.DataFrame]]:
    """A :class:`Fragment` (and the table) per (dataset, data kind), in :func:`data_groups` order."""
    fragments, tables = [], {}
    for i, (dataset, synthetic) in enumerate(data_groups(df), start):
        table = comparison_table(df, dataset, synthetic)
        tables[(dataset, synthetic)] = table
        kind = data_label(synthetic)
        cats = sorted(set(df[(df["dataset"] == dataset) & (df["synthetic"] == synthetic)]["category"]))
        notes = published_notes(dataset, cats)
        caption = (f"{dataset}: our results on {kind.upper()} data (rows whose source is a notebook). "
                   + ("Rows marked PUBLISHED are the seed authors' numbers on the REAL dataset with their "
                      "settings, shown for context only" + (": not comparable number for number with "
                                                            "synthetic-data results. " if synthetic else ". ")
                      if (table["source"].str.startswith("PUBLISHED")).any() else "")
                   + "Metrics are fractions; pixel F1/precision/recall at the threshold named in "
                     "threshold_source; n/a = not computable or not given. " + INTERVAL_NOTE
                   + (" Notes: " + " | ".join(notes) if notes and (table["source"].str.startswith("PUBLISHED")).any()
                      else ""))
        kind_slug = "synthetic" if synthetic else "real"
        fragments.append(Fragment(f"{i:02d}_{dataset}_{kind_slug}", caption, table))
    return fragments, tables


THRESHOLD_CAPTION = (
    "Honest versus ORACLE thresholds. 'validation thr.': the threshold was set on defect-free "
    "validation images before the test set was looked at, as it must be in practice. 'ORACLE': the "
    "threshold with the best F1 on the test set itself, an upper bound no deployed system reaches. "
    "The gap (oracle minus honest) is what the threshold choice costs; a large gap with a good AUROC "
    "means the scores separate the classes but the validation data do not tell where to cut. Image "
    "ORACLE F1 is recomputed here from each scores CSV; pixel ORACLE F1 and the image validation "
    "threshold are shown only where the notebook stored them (n/a / 'not reported' otherwise)."
)


def build_fragments(df: pd.DataFrame, *, others_present: bool,
                    older: pd.DataFrame | None = None) -> list[Fragment]:
    """Every fragment of the report, in order: a notice when only baselines exist, one table per
    (dataset, data kind), per-defect tables where the seeds give per-defect numbers, the
    honest-versus-oracle threshold table, each threshold rule's honest / ORACLE pixel F1, and the list of older results left out (``older``,
    from :func:`adlib.pipelines.comparison.older_table`)."""
    frags: list[Fragment] = []
    if not others_present:
        frags.append(Fragment("00_notice", "No results files of the model notebooks were found in this "
                              "RESULTS_DIR for this run: the tables below hold the classical baselines only."))
    dataset_frags, _ = dataset_fragments(df)
    frags += dataset_frags
    n = len(frags) + 1
    pub = published.published_table()
    per_defect_cats = sorted({(d, c) for d, c in zip(pub.loc[pub["defect"].notna(), "dataset"],
                                                      pub.loc[pub["defect"].notna(), "category"], strict=True)})
    for dataset, category in per_defect_cats:
        for synthetic in (False, True):
            table = per_defect_table(df, dataset, category, synthetic)
            if table.empty or not (~table["source"].str.startswith("PUBLISHED")).any():
                continue
            frags.append(Fragment(
                f"{n:02d}_{dataset}_{category}_per_defect_{'synthetic' if synthetic else 'real'}",
                f"{dataset}/{category}, {data_label(synthetic).upper()} data: pixel precision/recall/F1 per "
                "defect type at each method's validation threshold; PUBLISHED rows are the seed's numbers "
                "on the real dataset (fixed threshold, see the seed).", table))
            n += 1
    thr = threshold_table(df)
    if not thr.empty:
        frags.append(Fragment(f"{max(n, 90):02d}_thresholds_honest_vs_oracle", THRESHOLD_CAPTION, thr))
    rules = rule_ratio_table(df)
    if not rules.empty:
        frags.append(Fragment(f"{max(n, 90):02d}_thresholds_rules_vs_oracle", RULES_CAPTION, rules))
    paired = paired_fragment(df)
    if paired is not None:
        frags.append(paired)
    if older is not None and not older.empty:
        frags.append(Fragment("99_older_results_not_shown", OLDER_CAPTION, older))
    return frags


def paired_fragment(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> Fragment | None:
    """The "A beats B" table (:func:`adlib.pipelines.comparison_stats.paired_table`) as a fragment;
    None when no two methods scored the same test images."""
    table = paired_table(df, n_boot=n_boot, seed=seed)
    if table.empty:
        return None
    skipped = table.attrs.get("skipped", [])
    note = (f" {len(skipped)} pair(s) on the same dataset were left out because their scores CSVs list "
            "different test images." if skipped else "")
    return Fragment(PAIRED_FRAGMENT, PAIRED_CAPTION + note, table)


OLDER_CAPTION = (
    "OLDER results in this RESULTS_DIR, written before the current report run started (or before "
    "results carried run ids): they are left out of every table above, listed here with their date so "
    "that nothing from an earlier run is mistaken for this one."
)
