"""Curves and score plots of :mod:`adlib.viz`: ROC/PR curves, score histograms, training curves,
P/R/F1 against the threshold. Re-exported by :mod:`adlib.viz` (import them from there)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from adlib.viz_helpers import _finish, _new_axes, _to_numpy

# --------------------------------------------------------------------------- curves and scores


def roc_curves(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    title: str = "ROC",
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """ROC curves ``{name: (labels, scores)}`` with each AUROC (from adlib.metrics) in the legend."""
    from sklearn.metrics import roc_curve

    from adlib.metrics import image_auroc

    fig, ax = _new_axes(ax, (5.0, 4.5))
    for name, (labels, scores) in curves.items():
        y, s = _to_numpy(labels).ravel(), _to_numpy(scores).ravel().astype(np.float64)
        auc = image_auroc(s, y)
        if auc is None:
            ax.plot([], [], label=f"{name} (AUROC not computable: one class)")
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUROC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1, label="chance (AUROC = 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _finish(fig, show)


def pr_curves(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    title: str = "Precision-recall",
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """Precision-recall curves ``{name: (labels, scores)}`` (defective = positive) with each
    AUPR (average precision, from adlib.metrics) in the legend and the chance level dotted."""
    from sklearn.metrics import precision_recall_curve

    from adlib.metrics import image_aupr

    fig, ax = _new_axes(ax, (5.0, 4.5))
    for name, (labels, scores) in curves.items():
        y, s = _to_numpy(labels).ravel(), _to_numpy(scores).ravel().astype(np.float64)
        aupr = image_aupr(s, y)
        if aupr is None:
            ax.plot([], [], label=f"{name} (AUPR not computable: one class)")
            continue
        precision, recall, _ = precision_recall_curve(y, s)
        (line,) = ax.step(recall, precision, where="post", lw=1.8, label=f"{name} (AUPR = {aupr:.3f})")
        prevalence = float(np.mean(y.astype(bool)))
        ax.axhline(prevalence, ls=":", lw=1, color=line.get_color(), alpha=0.7)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title=title)
    ax.legend(loc="lower left", fontsize=8)
    return _finish(fig, show)


def _threshold_dict(threshold: float | Mapping[str, float] | None) -> dict[str, float]:
    if threshold is None:
        return {}
    if isinstance(threshold, Mapping):
        return {str(k): float(v) for k, v in threshold.items() if v is not None}
    return {"threshold": float(threshold)}


def score_distributions(
    scores: Any,
    labels: Any,
    threshold: float | Mapping[str, float] | None = None,
    *,
    bins: int | str = "auto",
    kde: bool = True,
    log: bool = False,
    xlabel: str = "anomaly score",
    title: str | None = None,
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """Histogram (+ KDE) of the scores of normal vs defective images, with threshold line(s).

    Args:
        scores, labels: one per image (label 1 = defective).
        threshold: a value, or ``{"validation": tau, "oracle": tau_oracle}`` for several lines.
        kde: overlay a kernel density estimate (skipped for a group with < 2 distinct values).
        log: logarithmic x axis (positive scores only).
    """
    import pandas as pd
    import seaborn as sns

    s = _to_numpy(scores).ravel().astype(np.float64)
    y = _to_numpy(labels).ravel().astype(int)
    if s.shape != y.shape:
        raise ValueError(f"score_distributions: {s.size} scores but {y.size} labels.")
    names = np.where(y == 1, "defective", "normal")
    counts = {n: int((names == n).sum()) for n in ("normal", "defective")}
    frame = pd.DataFrame({"score": s, "group": [f"{n} (n={counts[n]})" for n in names]})
    order = [f"{n} (n={counts[n]})" for n in ("normal", "defective") if counts[n]]
    kde_ok = kde and all(len(np.unique(s[names == n])) >= 2 for n in counts if counts[n])
    fig, ax = _new_axes(ax, (6.5, 4.0))
    sns.histplot(
        frame, x="score", hue="group", hue_order=order, bins=bins, kde=kde_ok, stat="density",
        common_norm=False, element="step", palette=["tab:blue", "tab:red"][: len(order)],
        log_scale=(log, False), ax=ax,
    )
    styles = ["--", "-.", ":", (0, (5, 1))]
    for i, (name, value) in enumerate(_threshold_dict(threshold).items()):
        ax.axvline(value, color="k", ls=styles[i % len(styles)], lw=1.3, label=f"{name} = {value:.4g}")
    legend = ax.get_legend()
    handles = legend.legend_handles if legend is not None else []
    texts = [t.get_text() for t in legend.get_texts()] if legend is not None else []
    extra_h, extra_l = ax.get_legend_handles_labels()
    ax.legend(list(handles) + extra_h, texts + extra_l, fontsize=8)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return _finish(fig, show)


def _history_frame(history_or_df: Any, per: str):
    import pandas as pd

    if hasattr(history_or_df, "to_frame") and not isinstance(history_or_df, (pd.DataFrame, pd.Series)):
        return history_or_df.to_frame(per)
    if isinstance(history_or_df, pd.DataFrame):
        return history_or_df
    return pd.DataFrame(history_or_df)


def training_curves(
    history_or_df: Any,
    per: str = "step",
    *,
    keys: Sequence[str] | None = None,
    log: bool = False,
    smooth: int | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """Loss curves from a :class:`adlib.train.History` or a DataFrame.

    Args:
        per: ``"step"`` (every optimisation step) or ``"epoch"`` (epoch means and ``val_*``).
        keys: columns to draw (default: every numeric column except counters, times and LRs).
        log: logarithmic y axis (symmetric-log when values are <= 0, e.g. WGAN losses).
        smooth: per-step curves: rolling-mean window drawn over the faded raw values
            (default: about 1/50 of the steps; 1 disables).
    """
    if per not in ("step", "epoch"):
        raise ValueError(f'per must be "step" or "epoch", got {per!r}')
    frame = _history_frame(history_or_df, per)
    if frame.empty:
        raise ValueError("training_curves: the history is empty (nothing was trained yet).")
    xcol = per if per in frame.columns else None
    skip = {"epoch", "step", "seconds"}
    if keys is None:
        keys = [c for c in frame.columns if c not in skip and not str(c).startswith("lr")
                and np.issubdtype(frame[c].dtype, np.number)]
    x = frame[xcol].to_numpy() + (1 if per == "epoch" else 0) if xcol else np.arange(1, len(frame) + 1)
    fig, ax = _new_axes(ax, (6.5, 4.0))
    window = smooth if smooth is not None else max(1, len(frame) // 50)
    for key in keys:
        values = frame[key].astype(float)
        style = "--" if str(key).startswith("val_") else "-"
        if per == "step" and window > 1:
            (raw,) = ax.plot(x, values.to_numpy(), lw=0.6, alpha=0.3)
            smoothed = values.rolling(window, min_periods=1).mean().to_numpy()
            ax.plot(x, smoothed, ls=style, lw=1.6, color=raw.get_color(), label=f"{key} (mean of {window})")
        else:
            ax.plot(x, values.to_numpy(), ls=style, lw=1.6, marker="o" if len(frame) <= 30 else None,
                    ms=3, label=str(key))
    if log:
        data = frame[list(keys)].to_numpy(dtype=float)
        if np.nanmin(data) > 0:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=max(1e-6, float(np.nanmedian(np.abs(data))) / 100))
    ax.set(xlabel=per, ylabel="loss", title=title or f"training curves (per {per})")
    ax.legend(fontsize=8)
    return _finish(fig, show)


def prf_vs_threshold(
    thresholds: Any,
    precision: Any = None,
    recall: Any = None,
    f1: Any = None,
    marks: Mapping[str, float] | None = None,
    *,
    logx: bool = False,
    title: str = "pixel precision / recall / F1 vs threshold",
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """Precision, recall and F1 against the threshold, with marked thresholds.

    ``thresholds`` may be the DataFrame of :func:`adlib.metrics.prf_curve` (columns
    ``threshold, precision, recall, f1``). ``None`` values (undefined ratios) are left as gaps.
    ``marks`` e.g. ``{"validation": tau_val, "oracle (test set)": tau_oracle}``.
    """
    if hasattr(thresholds, "columns"):
        frame = thresholds
        thresholds, precision, recall, f1 = (frame[c] for c in ("threshold", "precision", "recall", "f1"))

    def arr(v):
        return np.array([np.nan if e is None else float(e) for e in _to_numpy(v).ravel()], dtype=float)

    t = arr(thresholds)
    order = np.argsort(t)
    fig, ax = _new_axes(ax, (6.5, 4.0))
    for name, values, color in (("precision", precision, "tab:blue"), ("recall", recall, "tab:orange"),
                                ("F1", f1, "tab:green")):
        if values is not None:
            v = arr(values)
            if v.shape != t.shape:
                raise ValueError(f"prf_vs_threshold: {t.size} thresholds but {v.size} {name} values.")
            ax.plot(t[order], v[order], color=color, lw=1.8 if name == "F1" else 1.3, label=name)
    styles = ["--", ":", "-.", (0, (5, 1))]
    for i, (name, value) in enumerate((marks or {}).items()):
        if value is None:
            continue
        ax.axvline(float(value), color="k" if i == 0 else "0.4", ls=styles[i % len(styles)], lw=1.2,
                   label=f"{name} \N{GREEK SMALL LETTER TAU} = {float(value):.4g}")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel="threshold \N{GREEK SMALL LETTER TAU}", ylabel="value", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8)
    return _finish(fig, show)
