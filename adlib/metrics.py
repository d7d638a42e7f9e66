"""Image- and pixel-level metrics: AUROC, AUPR, AUPRO (FPR <= 0.3), precision/recall/F1.

Conventions:

* Arguments are (prediction, truth): ``image_auroc(scores, labels)``, ``pixel_auroc(maps, masks)``.
  Labels/masks are binary (1 / True = defective).
* A pixel or image is predicted anomalous when its value is strictly greater than the threshold.
* Anything that cannot be computed (a single class, no defect pixels) is ``None``, never a crash.

Pixel metrics never sort all pixels at once. They count pixels per bin of one threshold grid
(``np.bincount``), one chunk of images at a time, so that a few hundred 256x256 maps need a few
tens of MB beyond the maps themselves. The grid is either every distinct value (``exact``, the
default for up to :data:`EXACT_MAX_PIXELS` pixels; identical to sklearn) or ``n_bins`` quantiles of
a fixed random subsample of the map values. On the quantile grid the ROC and PRO curves are exact
at every grid point; only values falling in the same bin are treated as tied, which changes AUROC
by at most half the fraction of (defect, normal) pixel pairs sharing a bin (about 1e-4 for
``n_bins=10_000``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "MetricError",
    "PRF",
    "EXACT_MAX_PIXELS",
    "image_auroc",
    "image_aupr",
    "image_prf",
    "pixel_auroc",
    "aupro",
    "pixel_prf",
    "per_defect_prf",
    "prf_curve",
    "threshold_grid",
    "pixel_counts",
    "best_f1_from_counts",
]

EXACT_MAX_PIXELS = 2_000_000
"""Above this many pixels, pixel metrics use a quantile grid of ``n_bins`` thresholds."""

_CHUNK = 16  # images per counting chunk
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz


class MetricError(ValueError):
    """Raised for inputs that metrics cannot use (shapes, non-binary labels, NaN scores)."""


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 with their counts; ``None`` where a ratio is undefined."""

    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int

    def as_dict(self, prefix: str = "pixel_") -> dict[str, float | None]:
        """``{prefix+"f1", prefix+"precision", prefix+"recall"}`` as in the results files."""
        return {f"{prefix}f1": self.f1, f"{prefix}precision": self.precision, f"{prefix}recall": self.recall}


def _prf(tp: int, fp: int, fn: int) -> PRF:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return PRF(precision, recall, f1, int(tp), int(fp), int(fn))


def _np(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise MetricError(f"adlib.metrics: cannot read {name} as an array: {exc}") from exc


def _image_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = _np(scores, "scores").astype(np.float64).ravel()
    y = _np(labels, "labels").ravel()
    if s.shape != y.shape:
        raise MetricError(f"adlib.metrics: {s.size} scores but {y.size} labels.")
    if not np.isfinite(s).all():
        raise MetricError("adlib.metrics: scores contain NaN or inf; check the anomaly maps.")
    if not np.isin(y, (0, 1)).all():
        raise MetricError(
            "adlib.metrics: labels must be 0 (good) / 1 (defective). Argument order is "
            "(scores, labels), prediction first."
        )
    return s, y.astype(bool)


def image_auroc(scores, labels) -> float | None:
    """Image-level area under the ROC curve (sklearn); ``None`` if only one class is present."""
    s, y = _image_inputs(scores, labels)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def image_aupr(scores, labels) -> float | None:
    """Image-level area under the precision-recall curve (average precision, defective = positive)."""
    s, y = _image_inputs(scores, labels)
    if y.all() or not y.any():
        return None
    return float(average_precision_score(y, s))


def image_prf(scores, labels, threshold: float) -> PRF:
    """Image-level precision/recall/F1 when ``score > threshold`` means defective."""
    s, y = _image_inputs(scores, labels)
    t = float(threshold)
    pred = s > t
    return _prf(int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum()))


# --------------------------------------------------------------------------- pixel level


def _pixel_inputs(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    m = _np(maps, "maps")
    g = _np(masks, "masks")
    if m.ndim == 2:
        m = m[None]
    if g.ndim == 2:
        g = g[None]
    if m.ndim != 3 or m.shape != g.shape:
        raise MetricError(
            f"adlib.metrics: maps {m.shape} and masks {g.shape} must both be (N, H, W) with the same "
            "shape (resize masks to the map size with nearest-neighbour interpolation)."
        )
    if g.dtype != bool:
        if not np.isin(g, (0, 1)).all():
            raise MetricError("adlib.metrics: masks must be binary (bool or 0/1).")
        g = g.astype(bool)
    if m.dtype not in (np.float32, np.float64):
        m = m.astype(np.float32)
    return m, g


def _check_finite(m: np.ndarray) -> None:
    for i in range(0, len(m), _CHUNK):
        if not np.isfinite(m[i : i + _CHUNK]).all():
            raise MetricError("adlib.metrics: anomaly maps contain NaN or inf.")


def threshold_grid(maps, n_bins: int = 10_000, exact: bool | None = None, seed: int = 0) -> np.ndarray:
    """Sorted thresholds at which pixel curves are evaluated.

    Args:
        maps: (N, H, W) maps.
        n_bins: grid size when not exact.
        exact: every distinct value (``True``), quantiles of a subsample (``False``), or
            automatic (``None``: exact up to :data:`EXACT_MAX_PIXELS` pixels).
        seed: seed of the subsample (the result is deterministic).
    """
    m = _np(maps, "maps")
    if exact is None:
        exact = m.size <= EXACT_MAX_PIXELS
    if exact:
        return np.unique(m.astype(np.float64, copy=False))
    flat = m.reshape(-1)
    rng = np.random.default_rng(seed)
    n_sub = min(flat.size, max(50 * n_bins, 1_000_000))
    sub = flat[rng.integers(0, flat.size, n_sub)] if n_sub < flat.size else flat
    sub = np.sort(sub.astype(np.float64))
    idx = np.linspace(0, sub.size - 1, n_bins + 1).round().astype(np.int64)
    # the overall extremes close the grid: bin 0 holds only the minimum, none lies above the top
    return np.unique(np.concatenate([sub[idx], [float(flat.min()), float(flat.max())]]))


def pixel_counts(maps, masks, grid: np.ndarray, region_weights: bool = False):
    """Count normal and defect pixels per bin of ``grid``, chunk by chunk.

    Bin ``j`` holds values in ``(grid[j-1], grid[j]]``; bin ``len(grid)`` holds values above the grid.
    A threshold ``grid[j]`` therefore predicts as anomalous exactly the bins ``> j``.

    Returns:
        ``(neg, pos, pro)``: counts of normal and defect pixels per bin, and (if
        ``region_weights``) the per-bin sum of ``1 / (region size * number of regions)`` over defect
        pixels, with connected regions (8-connectivity) found per image; ``pro`` is ``None`` otherwise.
    """
    m, g = _pixel_inputs(maps, masks)
    nb = len(grid) + 1
    neg = np.zeros(nb, np.int64)
    pos = np.zeros(nb, np.int64)
    pro = np.zeros(nb, np.float64) if region_weights else None
    n_regions = 0
    structure = np.ones((3, 3), dtype=int)
    for i in range(0, len(m), _CHUNK):
        mc, gc = m[i : i + _CHUNK], g[i : i + _CHUNK]
        vals, gflat = mc.reshape(-1), gc.reshape(-1)
        neg += _bin_sorted(np.sort(vals[~gflat]), grid)
        pv = vals[gflat]
        if not region_weights:
            pos += _bin_sorted(np.sort(pv), grid)
            continue
        w = np.zeros(gc.shape, np.float64)
        for j in range(len(gc)):
            labeled, n = ndimage.label(gc[j], structure=structure)
            if n:
                sizes = np.bincount(labeled.ravel())
                inv = np.zeros(len(sizes), np.float64)
                inv[1:] = 1.0 / sizes[1:]
                w[j] = inv[labeled]
                n_regions += n
        order = np.argsort(pv, kind="stable")
        pos += _bin_sorted(pv[order], grid)
        pro += _bin_sorted(pv[order], grid, w.reshape(-1)[gflat][order])
    if region_weights and n_regions:
        pro /= n_regions
    return neg, pos, pro


def _bin_sorted(sorted_vals: np.ndarray, grid: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-bin counts (or weight sums) of already sorted values; bins as in :func:`pixel_counts`."""
    at = np.searchsorted(sorted_vals, grid, side="right")  # number of values <= grid[j]
    if weights is None:
        return np.diff(np.concatenate([[0], at, [len(sorted_vals)]]))
    cum = np.concatenate([[0.0], np.cumsum(weights)])
    return np.diff(np.concatenate([[0.0], cum[at], [cum[-1]]]))


def _descending_cumsum(counts: np.ndarray) -> np.ndarray:
    """Cumulative totals for thresholds from +inf down: entry 0 = nothing predicted anomalous."""
    return np.concatenate([[0], np.cumsum(counts[::-1])])


def pixel_auroc(maps, masks, n_bins: int = 10_000, exact: bool | None = None) -> float | None:
    """Pixel-level ROC AUC over all pixels of all images; ``None`` without both classes.

    Args:
        maps: (N, H, W) anomaly maps (float).
        masks: (N, H, W) ground truth (True = defect).
        n_bins, exact: threshold grid, see :func:`threshold_grid`.
    """
    m, g = _pixel_inputs(maps, masks)
    _check_finite(m)
    grid = threshold_grid(m, n_bins, exact)
    neg, pos, _ = pixel_counts(m, g, grid)
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    tpr = _descending_cumsum(pos) / pos.sum()
    fpr = _descending_cumsum(neg) / neg.sum()
    return float(_trapezoid(tpr, fpr))


def _trapezoid_until(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under the piecewise-linear curve (x ascending) from x[0] to ``x_max``."""
    keep = x <= x_max
    xs, ys = x[keep], y[keep]
    if xs[-1] < x_max:
        k = np.searchsorted(x, x_max, side="right")  # first point beyond x_max
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0) if x1 > x0 else y1
        xs, ys = np.append(xs, x_max), np.append(ys, y_at)
    return float(_trapezoid(ys, xs))


def aupro(
    maps, masks, fpr_limit: float = 0.3, n_bins: int = 10_000, exact: bool | None = None
) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD).

    For every threshold, PRO is the mean over all connected ground-truth regions (8-connectivity,
    per image) of the fraction of the region predicted anomalous, and FPR is the fraction of all
    defect-free pixels predicted anomalous. The PRO-vs-FPR curve is integrated for FPR in
    ``[0, fpr_limit]`` (interpolated at the limit) and divided by ``fpr_limit``, so 1 is perfect.

    Returns:
        A fraction in [0, 1], or ``None`` if there is no defect region or no normal pixel.
    """
    if not 0 < fpr_limit <= 1:
        raise MetricError(f"adlib.metrics: fpr_limit must be in (0, 1], got {fpr_limit}.")
    m, g = _pixel_inputs(maps, masks)
    _check_finite(m)
    grid = threshold_grid(m, n_bins, exact)
    neg, pos, pro = pixel_counts(m, g, grid, region_weights=True)
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    fpr = _descending_cumsum(neg) / neg.sum()
    pros = _descending_cumsum(pro)
    pros = np.minimum(pros / pros[-1], 1.0)  # removes float drift: all regions covered = 1
    return _trapezoid_until(fpr, pros, fpr_limit) / fpr_limit


def pixel_prf(maps, masks, threshold: float) -> PRF:
    """Pixel precision/recall/F1 counting every pixel of every image (``map > threshold``)."""
    m, g = _pixel_inputs(maps, masks)
    t = float(threshold)
    tp = fp = fn = 0
    for i in range(0, len(m), _CHUNK):
        pred, gt = m[i : i + _CHUNK] > t, g[i : i + _CHUNK]
        tp += int(np.count_nonzero(pred & gt))
        fp += int(np.count_nonzero(pred & ~gt))
        fn += int(np.count_nonzero(~pred & gt))
    return _prf(tp, fp, fn)


def per_defect_prf(
    maps, masks, defects: Sequence[str], threshold: float, include_good: bool = False
) -> dict[str, dict[str, float | None]]:
    """Pixel P/R/F1 per defect type, as in seed 000's tables and the results files.

    Args:
        maps, masks: (N, H, W).
        defects: (N,) defect type per image (``"good"`` for defect-free images).
        threshold: map values above it are predicted anomalous.
        include_good: also report ``"good"`` (only false positives there: precision 0 or None).

    Returns:
        ``{defect: {"pixel_f1", "pixel_precision", "pixel_recall"}}``, sorted by defect name.
    """
    m, g = _pixel_inputs(maps, masks)
    d = np.asarray([str(x) for x in defects])
    if len(d) != len(m):
        raise MetricError(f"adlib.metrics: {len(d)} defect names for {len(m)} maps.")
    out: dict[str, dict[str, float | None]] = {}
    for name in sorted(set(d.tolist())):
        if name == "good" and not include_good:
            continue
        sel = np.flatnonzero(d == name)
        out[name] = pixel_prf(m[sel], g[sel], threshold).as_dict("pixel_")
    return out


def prf_curve(maps, masks, thresholds: Sequence[float]) -> pd.DataFrame:
    """Pixel precision/recall/F1 for each threshold (one pass over the pixels).

    Returns:
        DataFrame with columns ``threshold, precision, recall, f1, tp, fp, fn`` in the order given.
    """
    ts = np.asarray(thresholds, dtype=np.float64).ravel()
    order = np.argsort(ts)
    grid = ts[order]
    neg, pos, _ = pixel_counts(maps, masks, grid)
    # values in bins > j are above grid[j]
    fp_sorted = np.cumsum(neg[::-1])[::-1][1:]
    tp_sorted = np.cumsum(pos[::-1])[::-1][1:]
    total_pos = int(pos.sum())
    rows = []
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    for i, t in enumerate(ts):
        j = inv[i]
        tp, fp = int(tp_sorted[j]), int(fp_sorted[j])
        r = _prf(tp, fp, total_pos - tp)
        rows.append({"threshold": float(t), "precision": r.precision, "recall": r.recall,
                     "f1": r.f1, "tp": r.tp, "fp": r.fp, "fn": r.fn})
    return pd.DataFrame(rows, columns=["threshold", "precision", "recall", "f1", "tp", "fp", "fn"])


def best_f1_from_counts(grid: np.ndarray, neg: np.ndarray, pos: np.ndarray) -> tuple[float, float | None]:
    """The threshold on ``grid`` (or just below its minimum) with the highest F1, and that F1.

    Used by :func:`adlib.thresholds.oracle_best_f1_threshold`; counts come from :func:`pixel_counts`.
    """
    total_pos = int(pos.sum())
    if total_pos == 0:
        return float(grid[-1]), None
    # candidate k: predict the top k bins; threshold = grid[len(grid) - k] ... and below min for all
    tp = _descending_cumsum(pos)[1:]  # k = 1 .. nb
    fp = _descending_cumsum(neg)[1:]
    f1 = 2 * tp / (2 * tp + fp + (total_pos - tp))
    k = int(np.argmax(f1))  # predicts bins nb-1-k .. nb-1
    j = len(grid) - 1 - k  # threshold index: bins > j
    value = float(grid[j]) if j >= 0 else float(np.nextafter(grid[0], -np.inf))
    return value, float(f1[k])
