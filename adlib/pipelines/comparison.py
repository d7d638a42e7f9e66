"""Notebook 05: comparison tables built from the results files only (GUIDE section 2).

Everything here reads ``RESULTS_DIR/<notebook>/<method>-<dataset>-<category>.json`` and the
``.scores.csv`` beside it, never another notebook's checkpoints or outputs.

* :func:`load_comparison` collects every valid results file (invalid ones are listed, not fatal).
* :func:`comparison_table`: one table per dataset and data kind (synthetic stand-in or real are
  never mixed), our rows first, then the seeds' published numbers (:mod:`adlib.published`) with
  their source. Published numbers are on the real datasets with the authors' settings: context,
  not targets.
* :func:`threshold_table`: honest (defect-free validation) versus ORACLE (best F1 on the test
  set) thresholds. The image-level oracle is recomputed here from the scores CSV for every method;
  the pixel-level oracle needs the maps, so it is shown only where a notebook stored it in its
  ``params`` (keys ``oracle_pixel_f1``/``oracle_pixel_threshold``); likewise the honest image
  threshold (``params["image_threshold"]``).
* :func:`roc_inputs` recomputes ROC curves from the scores CSVs; :func:`metric_heatmap` draws a
  method x metric heat map; :func:`write_fragments` writes the HTML fragments that
  :mod:`adlib.report` embeds (``RESULTS_DIR/comparison/*.html``).
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from adlib import metrics as M
from adlib import published, results

__all__ = [
    "NOTEBOOK", "FRAGMENT_DIR", "PARAM_COLUMNS", "Collected", "Fragment", "load_comparison",
    "data_groups", "data_label", "published_rows", "comparison_table", "per_defect_table",
    "threshold_table", "roc_inputs", "roc_target", "metric_heatmap", "score_explorer",
    "write_fragments", "dataset_fragments", "build_fragments",
]

NOTEBOOK = "05_comparison"
FRAGMENT_DIR = "comparison"
"""Sub-folder of RESULTS_DIR whose ``*.html`` files the report runner embeds (adlib.report)."""
PARAM_COLUMNS: tuple[str, ...] = (
    "image_threshold", "image_threshold_source", "oracle_image_threshold", "oracle_image_f1",
    "oracle_pixel_threshold", "oracle_pixel_f1",
)
"""Optional threshold details a notebook may store in its results ``params`` (see module doc)."""
_ID = ["data", "category", "method", "source", "profile", "threshold_source"]


@dataclass
class Collected:
    """All results files found under a RESULTS_DIR."""

    results_dir: Path
    frame: pd.DataFrame
    """One row per results file: the GUIDE keys, ``file``, ``data`` and :data:`PARAM_COLUMNS`."""
    skipped: list[str] = field(default_factory=list)
    """Messages for files that are not valid results files (ignored)."""

    def others(self, notebook: str = NOTEBOOK) -> pd.DataFrame:
        """Rows written by the other notebooks (not ``notebook``)."""
        return self.frame[self.frame["notebook"] != notebook].reset_index(drop=True)

    def summary(self) -> str:
        """One line per notebook: how many results files it left."""
        if self.frame.empty:
            return f"No results files under {self.results_dir}."
        counts = self.frame.groupby("notebook").size()
        lines = [f"{n}: {c} results file(s)" for n, c in counts.items()]
        if self.skipped:
            lines.append(f"{len(self.skipped)} file(s) skipped (not valid results files)")
        return "\n".join(lines)


def data_label(synthetic: bool) -> str:
    """``"synthetic stand-in"`` or ``"real"``."""
    return "synthetic stand-in" if synthetic else "real"


def load_comparison(results_dir: str | Path) -> Collected:
    """Collect the results files of ``RESULTS_DIR/<notebook>/`` (via :func:`adlib.results.collect_results`).

    Only files at the GUIDE depth whose folder is their ``notebook`` count; invalid files are
    skipped and listed in :attr:`Collected.skipped`. A missing folder gives an empty frame.
    """
    root = Path(results_dir)
    columns = [*results.RESULT_KEYS, "file", "data", *PARAM_COLUMNS]
    if not root.is_dir():
        return Collected(root, pd.DataFrame(columns=columns))
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
    for key in PARAM_COLUMNS:
        df[key] = [p.get(key) if isinstance(p, Mapping) else None for p in df["params"]]
    return Collected(root, df.loc[:, columns + [c for c in df.columns if c not in columns]], skipped)


def data_groups(df: pd.DataFrame) -> list[tuple[str, bool]]:
    """The (dataset, synthetic) pairs present, real data first within a dataset."""
    if df.empty:
        return []
    pairs = {(str(d), bool(s)) for d, s in zip(df["dataset"], df["synthetic"], strict=True)}
    return sorted(pairs, key=lambda p: (p[0], p[1]))


# --------------------------------------------------------------------------- tables


def _published_label(seed: str, source: str) -> str:
    return f"PUBLISHED: seed {seed}, {source}"


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

    Our rows: ``source`` is the notebook, ``data`` says synthetic stand-in or real. Published
    rows: ``source`` starts with ``PUBLISHED`` and names seed and table; ``data`` is
    ``real (published)``. Metrics we did not compute (or that a paper does not give) are NaN.
    """
    ours = df[(df["dataset"] == dataset) & (df["synthetic"].astype(bool) == bool(synthetic))]
    ours = ours.assign(source=ours["notebook"])
    table = ours.loc[:, _ID + list(metrics)].sort_values(["category", "method", "source"])
    if with_published and not ours.empty:
        pub = published_rows(dataset, sorted(set(ours["category"])))
        if not pub.empty:
            pub = pub.drop(columns=["defect", "note"]).assign(profile="", threshold_source="")
            table = pd.concat([table, pub], ignore_index=True, sort=False)
    table = table.reset_index(drop=True)
    for col in table.columns.difference(_ID):
        table[col] = pd.to_numeric(table[col], errors="coerce").round(decimals)
    return table


def published_notes(dataset: str, categories: Sequence[str] | None = None) -> list[str]:
    """The published rows' notes (``seed NNN: note``), once each, for a caption."""
    pub = published.published_table(dataset=dataset)
    if categories is not None:
        pub = pub[pub["category"].isin(list(categories))]
    seen = dict.fromkeys(f"seed {s}: {n}" for s, n in zip(pub["seed"], pub["note"], strict=True) if n)
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
    return M.image_prf(scores["score"].to_numpy(float), scores["label"].to_numpy(int), float(threshold)).f1


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
            "method": r["method"], "source": r["notebook"],
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
        out[f"{r['method']} [{r['notebook'][:2]}, n={len(s)}]"] = (s["label"].to_numpy(int),
                                                                   s["score"].to_numpy(float))
    return out


def metric_heatmap(table: pd.DataFrame, metrics: Sequence[str] = results.METRIC_KEYS, *,
                   title: str = "", label_cols: Sequence[str] = ("category", "method", "source")) -> Figure:
    """Heat map rows = table rows (category / method / source), columns = metrics in [0, 1].

    Missing values are left blank (grey) and written as ``n/a``.
    """
    cols = [m for m in metrics if m in table.columns]
    values = table[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float) if cols else np.zeros((0, 0))
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
    entries = {f"{r['method']} | {r['dataset']}/{r['category']} | {r['data']} [{r['notebook'][:2]}]": r
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
        prf = M.image_prf(s["score"].to_numpy(float), s["label"].to_numpy(int), float(slider.value))
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
                     "threshold_source; n/a = not computable or not given."
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


def build_fragments(df: pd.DataFrame, *, others_present: bool) -> list[Fragment]:
    """Every fragment of the report, in order: a notice when only baselines exist, one table per
    (dataset, data kind), per-defect tables where the seeds give per-defect numbers, and the
    honest-versus-oracle threshold table."""
    frags: list[Fragment] = []
    if not others_present:
        frags.append(Fragment("00_notice", "No results files of the model notebooks were found in this "
                              "RESULTS_DIR: the tables below hold the classical baselines only."))
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
    return frags
