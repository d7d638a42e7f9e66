"""Figures for the course: result grids, overlays, ROC/PR curves, score histograms, training curves.

Every function builds a ``matplotlib.figure.Figure`` **without pyplot** and returns it, so it
works under any backend (Agg on CI, inline in Jupyter), never opens a window, never leaks open
figures and never calls ``plt.show()``. In a notebook, a returned figure is shown when it is the
last expression of a cell (or with ``display(fig)``, or by passing ``show=True``); save it with
``fig.savefig(path)``. Pass ``ax=`` where offered to draw into an existing axes instead.

Metric values (AUROC, AUPR) come from :mod:`adlib.metrics`; this module only draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "result_grid",
    "overlay",
    "roc_curves",
    "pr_curves",
    "score_distributions",
    "training_curves",
    "prf_vs_threshold",
    "sample_grid",
    "image_grid",
    "show",
]

HEATMAP_CMAP = "inferno"
MASK_COLOR = (1.0, 0.15, 0.1)


# --------------------------------------------------------------------------- helpers


def show(fig: Figure) -> Figure:
    """Display ``fig`` now in a notebook (``IPython.display``); a no-op outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of ipykernel
        return fig
    if get_ipython() is not None:
        display(fig)
    return fig


def _finish(fig: Figure, show_now: bool) -> Figure:
    return show(fig) if show_now else fig


def _to_numpy(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)


def to_display(img: Any) -> np.ndarray:
    """One image as ``imshow`` wants it: HxW or HxWx3, uint8 or float in [0, 1].

    Accepts torch tensors or arrays in CHW or HWC layout. Float images outside [0, 1]
    (e.g. normalised to [-1, 1]) are min-max scaled for display only.
    """
    a = _to_numpy(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"Expected one image (HxW, HxWxC or CxHxW), got shape {a.shape}.")
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo < -1e-6 or hi > 1 + 1e-6:
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        return np.clip(a, 0.0, 1.0)
    return a


def _as_list(items: Any) -> list | None:
    """A batch (N,...) tensor/array or a sequence as a list of per-image items (``None`` kept)."""
    if items is None:
        return None
    if isinstance(items, (list, tuple)):
        return list(items)
    a = _to_numpy(items)
    return [a[i] for i in range(len(a))]


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.5)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _blank(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _mask_rgba(mask: np.ndarray, alpha: float, color=MASK_COLOR) -> np.ndarray:
    m = _to_numpy(mask).astype(bool)
    if m.ndim == 3:
        m = m.reshape(m.shape[-2:]) if m.shape[0] == 1 else m[..., 0]
    rgba = np.zeros((*m.shape, 4), dtype=np.float32)
    rgba[..., :3] = color
    rgba[..., 3] = m * alpha
    return rgba


def _is_mask(a: np.ndarray) -> bool:
    return a.dtype == bool or (np.issubdtype(a.dtype, np.integer) and set(np.unique(a)) <= {0, 1})


# --------------------------------------------------------------------------- result grids


def result_grid(
    images: Any,
    recons: Any = None,
    residual_maps: Any = None,
    pred_masks: Any = None,
    gt_masks: Any = None,
    titles: Sequence[str] | None = None,
    *,
    max_rows: int | None = 8,
    vmax: float | None = None,
    cell_size: float = 2.2,
    show: bool = False,
) -> Figure:
    """Seed 000's figure: input | reconstruction | residual heat map | predicted | ground truth.

    Columns whose argument is ``None`` are left out; a ``None`` entry inside ``gt_masks`` (e.g. a
    defect-free image or a dataset without masks) shows an empty "no mask" panel. Residual maps
    share one colour scale (0 .. ``vmax``, default: their maximum) so rows can be compared.

    Args:
        images: (N, C, H, W) / (N, H, W, C) tensor or array, or a list of images.
        recons, residual_maps, pred_masks, gt_masks: same length as ``images`` or ``None``.
        titles: one row label per image (e.g. defect type and score).
        max_rows: show at most this many rows (``None``: all).
        vmax: upper end of the residual colour scale.
        cell_size: inches per panel.
        show: display the figure now (notebooks).
    """
    columns = [
        ("Input", _as_list(images)),
        ("Reconstruction", _as_list(recons)),
        ("Residual", _as_list(residual_maps)),
        ("Predicted mask", _as_list(pred_masks)),
        ("Ground truth", _as_list(gt_masks)),
    ]
    columns = [(name, col) for name, col in columns if col is not None]
    n = len(columns[0][1])
    for name, col in columns:
        if len(col) != n:
            raise ValueError(f"result_grid: {n} images but {len(col)} entries for {name!r}.")
    rows = n if max_rows is None else min(n, max_rows)
    if rows == 0:
        raise ValueError("result_grid: no images to show.")
    residual = dict(columns).get("Residual")
    if residual is not None and vmax is None:
        vmax = max(float(np.nanmax(_to_numpy(r))) for r in residual[:rows] if r is not None)

    fig = Figure(figsize=(cell_size * len(columns), cell_size * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, len(columns), squeeze=False))
    heat = None
    for r in range(rows):
        for c, (name, col) in enumerate(columns):
            ax = axes[r, c]
            _blank(ax)
            item = col[r]
            if r == 0:
                ax.set_title(name, fontsize=10)
            if item is None:
                ax.text(0.5, 0.5, "no mask" if name == "Ground truth" else "n/a",
                        ha="center", va="center", transform=ax.transAxes, color="0.4")
                continue
            if name == "Residual":
                a = _to_numpy(item).squeeze()
                heat = ax.imshow(a, cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax)
            elif name in ("Predicted mask", "Ground truth"):
                ax.imshow(_to_numpy(item).squeeze().astype(float), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(to_display(item), cmap="gray")
        if titles is not None and r < len(titles):
            axes[r, 0].set_ylabel(str(titles[r]), fontsize=9)
    if heat is not None:
        col = [name for name, _ in columns].index("Residual")
        fig.colorbar(heat, ax=axes[rows - 1, col], location="bottom", shrink=0.9, label="residual")
    return _finish(fig, show)


def overlay(
    image: Any,
    heatmap_or_mask: Any,
    alpha: float = 0.5,
    *,
    cmap: str = HEATMAP_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar: bool = True,
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """Draw a heat map (float) or a mask (bool / 0-1 ints) over an image.

    Masks are drawn as a red fill with a contour; heat maps with ``cmap`` and a colour bar.
    """
    fig, ax = _new_axes(ax, (4.5, 4.5))
    img = to_display(image)
    ax.imshow(img, cmap="gray")
    over = _to_numpy(heatmap_or_mask).squeeze()
    if over.shape[:2] != img.shape[:2]:
        raise ValueError(f"overlay: image is {img.shape[:2]} but the map is {over.shape[:2]}.")
    if _is_mask(over):
        ax.imshow(_mask_rgba(over, alpha))
        if over.any() and not over.all():
            ax.contour(over.astype(float), levels=[0.5], colors=[MASK_COLOR], linewidths=1.0)
    else:
        im = ax.imshow(over, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
        if colorbar:
            fig.colorbar(im, ax=ax, shrink=0.8)
    _blank(ax)
    if title:
        ax.set_title(title)
    return _finish(fig, show)


def sample_grid(
    images: Any,
    masks: Any = None,
    ncols: int = 8,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.35,
    cell_size: float = 1.8,
    show: bool = False,
) -> Figure:
    """A grid of dataset samples, with ground-truth masks outlined in red when given."""
    imgs = _as_list(images)
    if not imgs:
        raise ValueError("sample_grid: no images to show.")
    mlist = _as_list(masks)
    if mlist is not None and len(mlist) != len(imgs):
        raise ValueError(f"sample_grid: {len(imgs)} images but {len(mlist)} masks.")
    ncols = max(1, min(ncols, len(imgs)))
    nrows = int(np.ceil(len(imgs) / ncols))
    fig = Figure(figsize=(cell_size * ncols, cell_size * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _blank(ax)
        if i >= len(imgs):
            ax.set_visible(False)
            continue
        ax.imshow(to_display(imgs[i]), cmap="gray")
        if mlist is not None and mlist[i] is not None:
            m = _to_numpy(mlist[i]).squeeze().astype(bool)
            ax.imshow(_mask_rgba(m, alpha))
            if m.any() and not m.all():
                ax.contour(m.astype(float), levels=[0.5], colors=[MASK_COLOR], linewidths=0.8)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=8)
    return _finish(fig, show)


def image_grid(
    images: Any,
    nrow: int = 8,
    *,
    value_range: tuple[float, float] | None = None,
    title: str | None = None,
    padding: int = 2,
    figsize: tuple[float, float] | None = None,
    show: bool = False,
) -> Figure:
    """One mosaic of many images (GAN samples), via ``torchvision.utils.make_grid``.

    Args:
        images: (N, C, H, W) tensor/array (or (N, H, W)).
        nrow: images per row.
        value_range: data range to map to black..white (e.g. ``(-1, 1)`` for tanh outputs);
            ``None``: the batch's min..max.
    """
    import torch
    from torchvision.utils import make_grid

    t = torch.as_tensor(_to_numpy(images)).float()
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4 or t.shape[0] == 0:
        raise ValueError(f"image_grid expects (N, C, H, W) images, got shape {tuple(t.shape)}.")
    if t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3):
        t = t.permute(0, 3, 1, 2)
    grid = make_grid(t, nrow=nrow, padding=padding, normalize=True, value_range=value_range, pad_value=1.0)
    fig, ax = _new_axes(None, figsize or (min(12.0, 1.2 * nrow), min(12.0, 1.2 * np.ceil(len(t) / nrow))))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
    _blank(ax)
    if title:
        ax.set_title(title)
    return _finish(fig, show)


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
