"""Where a detector goes wrong, at the honest image threshold.

Two views of one :class:`adlib.experiment.Evaluation` (any chapter's: the fields used are
``scores``, ``labels``, ``defects``, ``paths``, ``image_threshold``, ``maps`` and ``masks``):

* :func:`misclassified` / :func:`error_gallery`: the false positives (defect-free images scored
  above the threshold) and false negatives (defective images at or below it), worst first, as a
  table and as a gallery of image | anomaly map | mask;
* :func:`defect_areas` / :func:`detection_by_area` / :func:`area_figure`: the detection rate of
  defective images against the share of the image their defect covers (needs masks).

A test image counts as *detected* when ``score > threshold``, the rule of
:func:`adlib.metrics.image_prf`. The threshold is the honest one (from defect-free validation
images); nothing here looks for a better one on the test set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from adlib.viz_helpers import HEATMAP_CMAP, _blank, _finish, _to_numpy, to_display

AREA_EDGES: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
"""Default buckets of :func:`detection_by_area`: defect area as a fraction of the image."""

KINDS: tuple[str, str] = ("false positive", "false negative")


def _threshold(ev: Any) -> float:
    return float(ev.image_threshold.value)


def misclassified(ev: Any) -> pd.DataFrame:
    """The test images on the wrong side of the honest image threshold, worst first.

    Returns:
        One row per error: ``index`` (test position), ``kind`` ("false positive" /
        "false negative"), ``defect``, ``path``, ``score``, ``threshold`` and ``margin`` (how far
        the score is on the wrong side: ``score - threshold`` for a false positive,
        ``threshold - score`` for a false negative; ties at the threshold count as misses with
        margin 0). False positives come first, each kind sorted by decreasing margin.
    """
    scores = np.asarray(ev.scores, dtype=np.float64)
    labels = np.asarray(ev.labels).astype(int)
    t = _threshold(ev)
    fp = np.flatnonzero((labels == 0) & (scores > t))
    fn = np.flatnonzero((labels == 1) & ~(scores > t))
    rows = []
    for kind, idx, sign in ((KINDS[0], fp, 1.0), (KINDS[1], fn, -1.0)):
        margin = sign * (scores[idx] - t)
        for i, m in sorted(zip(idx.tolist(), margin.tolist(), strict=True), key=lambda p: (-p[1], p[0])):
            rows.append({"index": i, "kind": kind, "defect": ev.defects[i], "path": str(ev.paths[i]),
                         "score": float(scores[i]), "threshold": t, "margin": float(m)})
    cols = ["index", "kind", "defect", "path", "score", "threshold", "margin"]
    return pd.DataFrame(rows, columns=cols)


def error_summary(ev: Any) -> str:
    """One sentence: how many false positives and negatives at which threshold."""
    table = misclassified(ev)
    labels = np.asarray(ev.labels).astype(int)
    n_fp = int((table["kind"] == KINDS[0]).sum())
    n_fn = int((table["kind"] == KINDS[1]).sum())
    return (f"{ev.method}: {n_fp} false positives of {int((labels == 0).sum())} defect-free and "
            f"{n_fn} false negatives of {int((labels == 1).sum())} defective test images at the honest "
            f"image threshold {_threshold(ev):.4g} ({ev.image_threshold.source})")


def _image(images: Any, i: int) -> np.ndarray:
    item = images(i) if callable(images) else images[i]
    if isinstance(item, dict):  # an adlib ImageDataset item
        item = item["image"]
    return to_display(item)


def error_gallery(
    ev: Any,
    images: Any | Callable[[int], Any],
    *,
    max_per_kind: int = 8,
    per_row: int = 4,
    maps: Any = None,
    cell_size: float = 1.9,
    show: bool = False,
) -> Figure:
    """False positives and false negatives at the honest image threshold, worst first.

    Each error shows its image, its anomaly map (one colour scale for the whole gallery) and,
    when the evaluation has masks, its ground truth; the title gives the defect type and
    ``score > threshold`` (or ``<=``). Without any error the figure says so.

    Args:
        ev: the evaluation.
        images: the test images, indexable by test position (an (N, C, H, W) / (N, H, W, C)
            array or tensor, a list, an ``ImageDataset``) or a function ``i -> image``.
        max_per_kind: at most this many false positives and this many false negatives.
        per_row: errors per row (each takes 2 or 3 panels).
        maps: anomaly maps to show instead of ``ev.maps`` (None and no ``ev.maps``: no map panel).
        cell_size: inches per panel.
        show: display the figure now (notebooks).

    Raises:
        ValueError: ``max_per_kind`` or ``per_row`` below 1.
    """
    if max_per_kind < 1 or per_row < 1:
        raise ValueError(f"error_gallery: max_per_kind ({max_per_kind}) and per_row ({per_row}) must be >= 1.")
    table = misclassified(ev)
    t = _threshold(ev)
    if table.empty:
        fig = Figure(figsize=(7.0, 1.2), layout="constrained")
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"{ev.method}: no false positives and no false negatives at the honest image "
                f"threshold {t:.4g}:\nall {len(ev.scores)} test images are on the right side.",
                ha="center", va="center", fontsize=10, transform=ax.transAxes)
        return _finish(fig, show)
    maps = ev.maps if maps is None else maps
    masks = ev.masks
    panels = 1 + (maps is not None) + (masks is not None)
    groups = [(k, table[table["kind"] == k].head(max_per_kind)) for k in KINDS]
    groups = [(k, g) for k, g in groups if len(g)]
    shown = [int(i) for _, g in groups for i in g["index"]]
    if maps is not None:
        vals = [_to_numpy(maps[i]).astype(np.float64) for i in shown]
        vmin, vmax = min(float(np.nanmin(v)) for v in vals), max(float(np.nanmax(v)) for v in vals)
    rows = sum(math.ceil(len(g) / per_row) for _, g in groups)
    cols = panels * min(per_row, max(len(g) for _, g in groups))
    fig = Figure(figsize=(cell_size * cols, (cell_size + 0.45) * rows + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    r = 0
    heat = None
    for kind, g in groups:
        n_all = int((table["kind"] == kind).sum())
        for j, row in enumerate(g.itertuples()):
            rr, c0 = r + j // per_row, panels * (j % per_row)
            i = int(row.index)
            ax = axes[rr, c0]
            ax.set_axis_on()
            _blank(ax)
            img = _image(images, i)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            rel = ">" if kind == KINDS[0] else "<="
            ax.set_title(f"{kind} {j + 1}/{n_all}: {row.defect}\n{row.score:.4g} {rel} {t:.4g}",
                         fontsize=8, loc="left")
            c = c0 + 1
            if maps is not None:
                ax = axes[rr, c]
                ax.set_axis_on()
                _blank(ax)
                heat = ax.imshow(_to_numpy(maps[i]).squeeze(), cmap=HEATMAP_CMAP, vmin=vmin, vmax=vmax)
                ax.set_title("anomaly map", fontsize=8)
                c += 1
            if masks is not None:
                ax = axes[rr, c]
                ax.set_axis_on()
                _blank(ax)
                ax.imshow(np.asarray(masks[i]).squeeze().astype(float), cmap="gray", vmin=0, vmax=1)
                ax.set_title("ground truth", fontsize=8)
        r += math.ceil(len(g) / per_row)
    if heat is not None:
        fig.colorbar(heat, ax=axes.ravel().tolist(), location="right", shrink=0.6, aspect=30,
                     label="anomaly map (shared scale)")
    fig.suptitle(error_summary(ev) + (f"; worst {max_per_kind} per kind shown" if
                                      (table["kind"].value_counts() > max_per_kind).any() else ""),
                 fontsize=9)
    return _finish(fig, show)


# --------------------------------------------------------------------------- defect area


def defect_areas(ev: Any) -> pd.DataFrame | None:
    """Per defective test image: its defect area and whether the honest threshold catches it.

    Returns:
        ``index, defect, path, area`` (mask pixels / image pixels), ``score``, ``detected``
        (``score > threshold``); None when the evaluation has no masks.
    """
    if ev.masks is None:
        return None
    masks = np.asarray(ev.masks).astype(bool)
    labels = np.asarray(ev.labels).astype(int)
    scores = np.asarray(ev.scores, dtype=np.float64)
    t = _threshold(ev)
    idx = np.flatnonzero(labels == 1)
    return pd.DataFrame({
        "index": idx, "defect": [ev.defects[i] for i in idx], "path": [str(ev.paths[i]) for i in idx],
        "area": [float(masks[i].mean()) for i in idx], "score": scores[idx], "detected": scores[idx] > t})


def _pct(v: float) -> str:
    return f"{100 * v:.3g} %"


def detection_by_area(ev: Any, bins: int | Sequence[float] = AREA_EDGES) -> pd.DataFrame | None:
    """Detection rate of defective images per defect-area bucket, at the honest image threshold.

    Args:
        ev: the evaluation (with masks).
        bins: bucket edges as fractions of the image area (increasing; a bucket holds
            ``lo < area <= hi``, the first also ``area == lo``), or a number of quantile
            buckets of the observed areas.

    Returns:
        One row per non-empty bucket: ``bucket`` (label, in % of the image), ``lo``, ``hi``,
        ``n``, ``detected``, ``rate``; images whose mask is empty form a bucket of their own
        ("empty mask"). None when the evaluation has no masks or no defective image.

    Raises:
        ValueError: fewer than two edges, edges not increasing, or ``bins < 1``.
    """
    per = defect_areas(ev)
    if per is None or per.empty:
        return None
    area = per["area"].to_numpy()
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise ValueError(f"detection_by_area: bins={bins} must be >= 1.")
        pos = area[area > 0]
        edges = np.unique(np.quantile(pos, np.linspace(0, 1, int(bins) + 1))) if len(pos) else np.array([0.0, 1.0])
        if len(edges) == 1:
            edges = np.array([edges[0], edges[0]])
    else:
        edges = np.asarray(list(bins), dtype=np.float64)
        if len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"detection_by_area: bins {list(bins)} must be at least two increasing edges "
                             "(fractions of the image area, e.g. (0, 0.01, 0.1, 1)).")
    rows = []
    empty = area == 0
    if empty.any():
        rows.append({"bucket": "empty mask", "lo": 0.0, "hi": 0.0, "n": int(empty.sum()),
                     "detected": int(per["detected"][empty].sum())})
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        inside = ~empty & (area <= hi) & ((area > lo) | ((k == 0) & (area >= lo)))
        if inside.any():
            rows.append({"bucket": f"{_pct(lo)} - {_pct(hi)}", "lo": float(lo), "hi": float(hi),
                         "n": int(inside.sum()), "detected": int(per["detected"][inside].sum())})
    outside = ~empty & ((area < edges[0]) | (area > edges[-1]))
    if outside.any():
        rows.append({"bucket": "outside the edges", "lo": math.nan, "hi": math.nan, "n": int(outside.sum()),
                     "detected": int(per["detected"][outside].sum())})
    out = pd.DataFrame(rows, columns=["bucket", "lo", "hi", "n", "detected"])
    out["rate"] = out["detected"] / out["n"]
    return out


def area_figure(table: pd.DataFrame | None, *, title: str = "", show: bool = False) -> Figure | None:
    """Bar plot of :func:`detection_by_area`: detection rate per area bucket, ``detected/n`` on top.

    Returns None (nothing to draw) when ``table`` is None or empty.
    """
    if table is None or table.empty:
        return None
    fig = Figure(figsize=(max(4.0, 1.1 * len(table) + 1.5), 3.4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.bar(x, table["rate"], color="tab:blue")
    for xi, (d, n) in enumerate(zip(table["detected"], table["n"], strict=True)):
        ax.text(xi, min(float(d) / n, 1.0) + 0.02, f"{d}/{n}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, table["bucket"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("defect area (share of the image)")
    ax.set_ylabel("detected at the honest threshold")
    ax.set_title(title or "detection rate by defect area", fontsize=10)
    return _finish(fig, show)


def show_area_detection(ev: Any, bins: int | Sequence[float] = AREA_EDGES) -> pd.DataFrame | None:
    """Notebook helper: display :func:`detection_by_area` and its bar plot, or say why not.

    Returns the table (None without masks, after printing why).
    """
    table = detection_by_area(ev, bins)
    if table is None:
        print(f"{ev.method}: no ground-truth masks (or no defective test image), so no defect areas: "
              "detection by defect area is skipped.")
        return None
    from IPython.display import display

    display(table)
    display(area_figure(table, title=f"{ev.method}: defective images detected at the honest image "
                                     f"threshold {_threshold(ev):.4g}"))
    return table
