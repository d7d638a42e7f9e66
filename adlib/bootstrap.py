"""Bootstrap intervals over test images, and paired bootstraps for "A beats B".

The test set is a sample: a different draw of test images would give a different AUROC. The
bootstrap estimates that spread by resampling the test IMAGES with replacement, **stratified by
label** (normals and defectives are resampled separately, so every resample keeps both classes
in their original numbers), recomputing each metric on every resample, and reporting the 2.5 %
and 97.5 % percentiles (a 95 % percentile interval).

Everything is vectorised: a resample is a row of a weight matrix ``W`` (``W[b, i]`` = how often
image ``i`` was drawn in resample ``b``), and every metric is a function of weighted sums over
images, computed for all rows at once.

* Image AUROC / AUPR are computed exactly as :func:`adlib.metrics.image_auroc` /
  :func:`adlib.metrics.image_aupr` (sklearn's ``roc_auc_score`` with ties counted half, and
  ``average_precision_score``): per distinct score, the weighted numbers of defective and normal
  images, then the usual sums.
* Pixel metrics are resampled over IMAGES, not pixels (pixels of one image are not independent):
  each image contributes a histogram of its normal and defect pixels over one shared threshold
  grid (:func:`adlib.metrics.threshold_grid`, ``n_bins`` quantiles; bins as in
  :func:`adlib.metrics.pixel_counts`), so a resample's pixel ROC is a weighted sum of histograms.
  On the grid, values in one bin count as tied; with the default 2 000 bins this moves pixel
  AUROC by at most a few 1e-4 from the exact value. Pixel F1/precision/recall at the honest
  threshold come from per-image tp/fp/fn (exact). AUPRO is resampled the same way: per image, the
  per-bin sums of ``1 / region size`` over its defect pixels and its number of regions
  (8-connected, per image, as in :func:`adlib.metrics.aupro`).

:func:`paired_bootstrap` resamples the SAME images for two methods and reports the distribution
of the difference; :func:`paired_from_scores` aligns two scores CSVs on their image paths first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CI_KEYS", "DEFAULT_N_BOOT", "DEFAULT_SEED", "LEVEL", "stratified_indices", "resample_weights",
    "image_stats", "image_ci", "PixelHistograms", "pixel_histograms", "pixel_ci", "evaluation_intervals",
    "Paired", "paired_bootstrap", "paired_from_scores", "check_intervals",
]

CI_KEYS: tuple[str, ...] = (
    "image_auroc", "image_aupr", "image_f1", "pixel_auroc", "aupro", "pixel_f1", "pixel_precision",
    "pixel_recall",
)
"""Metrics that can carry an interval in a results file (``ci95``)."""
DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
PIXEL_BINS = 2000
"""Default size of the pixel threshold grid used for the pixel intervals."""
_IMAGE_METRICS = ("image_auroc", "image_aupr")
_CHUNK = 32  # images per chunk when building pixel histograms


# --------------------------------------------------------------------------- resampling


def _labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels).ravel()
    if y.size == 0 or not np.isin(y, (0, 1)).all():
        raise ValueError("bootstrap: labels must be a non-empty sequence of 0 (good) / 1 (defective).")
    return y.astype(int)


def stratified_indices(labels: Any, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``(n_boot, n)`` indices: each row resamples the normals among the normals and the
    defectives among the defectives (positions keep their class), so every row has both classes
    in their original numbers. Deterministic for a given ``seed``."""
    y = _labels(labels)
    if int(n_boot) < 1:
        raise ValueError(f"bootstrap: n_boot must be at least 1, got {n_boot}.")
    rng = np.random.default_rng(seed)
    idx = np.empty((int(n_boot), y.size), np.int64)
    for cls in (0, 1):  # two classes, not a loop over resamples
        where = np.flatnonzero(y == cls)
        if where.size:
            idx[:, where] = where[rng.integers(0, where.size, (int(n_boot), where.size))]
    return idx


def resample_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """``(n_boot, n)`` counts: how often each image was drawn in each resample."""
    rows = np.arange(indices.shape[0], dtype=np.int64)[:, None] * n
    return np.bincount((rows + indices).ravel(), minlength=indices.shape[0] * n).reshape(-1, n).astype(np.float64)


def _percentile(values: np.ndarray, level: float) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- image level


def image_stats(scores: Any, labels: Any, weights: np.ndarray, threshold: float | None = None) -> dict[str, np.ndarray]:
    """Image AUROC, AUPR (and F1 at ``threshold``) for every row of ``weights`` (``(B, n)``).

    With ``weights = np.ones((1, n))`` this is the observed value (equal to sklearn's).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = _labels(labels)
    if s.shape != y.shape or weights.shape[1] != s.size:
        raise ValueError(f"bootstrap: {s.size} scores, {y.size} labels, weights for {weights.shape[1]} images.")
    if not np.isfinite(s).all():
        raise ValueError("bootstrap: scores contain NaN or inf.")
    order = np.argsort(s, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(s[order]) > 0])  # groups of tied scores, ascending
    w = weights[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)  # (B, distinct scores)
    neg = np.add.reduceat(w * (1 - y[order]), starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    below = np.cumsum(neg, axis=1) - neg
    auroc = _ratio((pos * (below + 0.5 * neg)).sum(axis=1), n_pos * n_neg)
    tp_ge = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]  # defective images with score >= this one
    fp_ge = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
    precision = _ratio(tp_ge, tp_ge + fp_ge)
    aupr = _ratio((pos * np.nan_to_num(precision)).sum(axis=1), n_pos)
    both = (n_pos > 0) & (n_neg > 0)
    out = {"image_auroc": np.where(both, auroc, np.nan), "image_aupr": np.where(both, aupr, np.nan)}
    if threshold is not None:
        pred = (s > float(threshold)).astype(np.float64)
        tp, fp = weights @ (pred * y), weights @ (pred * (1 - y))
        out["image_f1"] = _ratio(2 * tp, tp + fp + n_pos)  # 2tp + fp + fn = tp + fp + n_pos
    return out


def image_ci(
    scores: Any,
    labels: Any,
    *,
    threshold: float | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> dict[str, tuple[float, float] | None]:
    """Percentile intervals of image AUROC, AUPR (and F1 at ``threshold``) over stratified resamples.

    Returns:
        ``{metric: (lo, hi)}``; ``None`` for a metric that no resample can compute (one class).
    """
    y = _labels(labels)
    weights = resample_weights(stratified_indices(y, n_boot, seed), y.size)
    stats = image_stats(scores, y, weights, threshold)
    return {k: _percentile(v, level) for k, v in stats.items()}


# --------------------------------------------------------------------------- pixel level


@dataclass
class PixelHistograms:
    """Per-image pixel counts over one threshold grid: enough to recompute pixel metrics of any
    weighted set of images (rows of a weight matrix)."""

    grid: np.ndarray
    neg: np.ndarray
    """``(n, bins)`` normal pixels per image and bin (bins as in :func:`adlib.metrics.pixel_counts`)."""
    pos: np.ndarray
    """``(n, bins)`` defect pixels per image and bin."""
    pro: np.ndarray
    """``(n, bins)`` per-bin sum of ``1 / region size`` over each image's defect pixels."""
    regions: np.ndarray
    """``(n,)`` connected defect regions per image."""
    prf: np.ndarray | None = None
    """``(n, 3)`` tp, fp, fn per image at the pixel threshold (None without one)."""

    def stats(self, weights: np.ndarray, fpr_limit: float = 0.3) -> dict[str, np.ndarray]:
        """Pixel AUROC, AUPRO (and F1/precision/recall) for every row of ``weights``."""
        neg, pos, pro = weights @ self.neg, weights @ self.pos, weights @ self.pro
        fpr = _descending_cumsum(neg) / neg.sum(axis=1, keepdims=True).clip(min=1e-300)
        tpr = _descending_cumsum(pos) / pos.sum(axis=1, keepdims=True).clip(min=1e-300)
        ok = (neg.sum(axis=1) > 0) & (pos.sum(axis=1) > 0)
        auroc = np.where(ok, _trapezoid_rows(tpr, fpr, 1.0), np.nan)
        pros = _descending_cumsum(pro)
        pros = np.minimum(pros / pros[:, -1:].clip(min=1e-300), 1.0)
        aupro = np.where(ok & (weights @ self.regions > 0), _trapezoid_rows(pros, fpr, fpr_limit) / fpr_limit, np.nan)
        out = {"pixel_auroc": auroc, "aupro": aupro}
        if self.prf is not None:
            tp, fp, fn = (weights @ self.prf).T
            out.update(pixel_f1=_ratio(2 * tp, 2 * tp + fp + fn), pixel_precision=_ratio(tp, tp + fp),
                       pixel_recall=_ratio(tp, tp + fn))
        return out


def _descending_cumsum(counts: np.ndarray) -> np.ndarray:
    """Row-wise totals for thresholds from +inf down (column 0: nothing predicted anomalous)."""
    return np.concatenate([np.zeros((counts.shape[0], 1)), np.cumsum(counts[:, ::-1], axis=1)], axis=1)


def _trapezoid_rows(y: np.ndarray, x: np.ndarray, x_max: float) -> np.ndarray:
    """Row-wise area under the piecewise-linear curve (x ascending per row) from x[0] to ``x_max``,
    interpolated at ``x_max`` exactly as :func:`adlib.metrics.aupro` does for one curve."""
    seg = np.diff(x, axis=1) * (y[:, 1:] + y[:, :-1]) / 2
    area = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(seg, axis=1)], axis=1)
    k = (x <= x_max).sum(axis=1)  # points inside; k >= 1 since x starts at 0
    rows = np.arange(x.shape[0])
    last = k - 1
    out = area[rows, last]
    beyond = k < x.shape[1]
    nxt = np.minimum(k, x.shape[1] - 1)
    x0, x1, y0, y1 = x[rows, last], x[rows, nxt], y[rows, last], y[rows, nxt]
    span = np.where(x1 > x0, x1 - x0, 1.0)
    y_at = np.where(x1 > x0, y0 + (y1 - y0) * (x_max - x0) / span, y1)
    return out + np.where(beyond, (x_max - x0) * (y0 + y_at) / 2, 0.0)


def pixel_histograms(maps: Any, masks: Any, threshold: float | None = None, *, n_bins: int = PIXEL_BINS,
                     seed: int = DEFAULT_SEED) -> PixelHistograms:
    """Per-image histograms of normal/defect pixels (and region weights, tp/fp/fn at ``threshold``)."""
    from scipy import ndimage

    from adlib import metrics

    m, g = metrics._pixel_inputs(maps, masks)
    metrics._check_finite(m)
    grid = metrics.threshold_grid(m, n_bins, exact=False, seed=seed)
    n, nb = len(m), len(grid) + 1
    neg, pos, pro = np.zeros((n, nb)), np.zeros((n, nb)), np.zeros((n, nb))
    regions = np.zeros(n)
    prf = np.zeros((n, 3)) if threshold is not None else None
    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = 1  # 8-connected within an image, never across images
    for i in range(0, n, _CHUNK):  # chunks of images (not resamples), to bound memory
        mc, gc = m[i:i + _CHUNK], g[i:i + _CHUNK]
        k = len(mc)
        bins = np.searchsorted(grid, mc.reshape(k, -1), side="left")  # bin j holds (grid[j-1], grid[j]]
        key = (bins + nb * np.arange(k)[:, None]).ravel()
        gt = gc.reshape(-1)
        neg[i:i + k] = np.bincount(key[~gt], minlength=k * nb).reshape(k, nb)
        pos[i:i + k] = np.bincount(key[gt], minlength=k * nb).reshape(k, nb)
        labeled, count = ndimage.label(gc, structure=structure)
        if count:
            flat = labeled.reshape(-1)
            inv = np.zeros(count + 1)
            inv[1:] = 1.0 / np.bincount(flat)[1:]
            pro[i:i + k] = np.bincount(key[gt], weights=inv[flat[gt]], minlength=k * nb).reshape(k, nb)
            first = np.array([s[0].start for s in ndimage.find_objects(labeled)])
            regions[i:i + k] = np.bincount(first, minlength=k)
        if prf is not None:
            pred = mc.reshape(k, -1) > float(threshold)
            truth = gc.reshape(k, -1)
            prf[i:i + k] = np.stack([(pred & truth).sum(1), (pred & ~truth).sum(1), (~pred & truth).sum(1)], 1)
    return PixelHistograms(grid=grid, neg=neg, pos=pos, pro=pro, regions=regions, prf=prf)


def pixel_ci(
    maps: Any,
    masks: Any,
    *,
    labels: Any | None = None,
    threshold: float | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
    n_bins: int = PIXEL_BINS,
) -> dict[str, tuple[float, float] | None]:
    """Percentile intervals of pixel AUROC, AUPRO (and pixel F1/precision/recall at ``threshold``),
    resampling IMAGES stratified by ``labels`` (default: an image is defective when its mask has a
    defect pixel). Pixel AUROC/AUPRO are on an ``n_bins`` quantile grid (see the module doc)."""
    hist = pixel_histograms(maps, masks, threshold, n_bins=n_bins, seed=seed)
    y = _labels((hist.pos.sum(axis=1) > 0).astype(int) if labels is None else labels)
    weights = resample_weights(stratified_indices(y, n_boot, seed), y.size)
    return {k: _percentile(v, level) for k, v in hist.stats(weights).items()}


def evaluation_intervals(
    *,
    scores: Any,
    labels: Any,
    image_threshold: float | None = None,
    maps: Any | None = None,
    masks: Any | None = None,
    pixel_threshold: float | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> tuple[dict[str, tuple[float, float] | None], dict[str, Any]]:
    """Image and pixel intervals from ONE set of resampled images (what :func:`adlib.experiment.evaluate` stores).

    Returns:
        ``(ci, meta)``: ``{metric: (lo, hi) | None}`` for :data:`CI_KEYS` that apply, and the
        bootstrap description stored beside them (n, seed, level, stratified_by, unit, pixel_bins).
    """
    y = _labels(labels)
    weights = resample_weights(stratified_indices(y, n_boot, seed), y.size)
    stats = image_stats(scores, y, weights, image_threshold)
    meta: dict[str, Any] = {"n": int(n_boot), "seed": int(seed), "level": float(level), "stratified_by": "label",
                            "unit": "test image"}
    if maps is not None and masks is not None:
        hist = pixel_histograms(maps, masks, pixel_threshold, seed=seed)
        stats.update(hist.stats(weights))
        meta["pixel_bins"] = int(len(hist.grid))
    return {k: _percentile(v, level) for k, v in stats.items()}, meta


# --------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class Paired:
    """A paired bootstrap of ``metric(A) - metric(B)`` on the same resampled test images."""

    metric: str
    a: float
    b: float
    difference: float
    """Observed ``A - B`` on the full test set."""
    ci: tuple[float, float]
    """Percentile interval of the difference (``level``)."""
    p_a_beats_b: float
    """Share of resamples where A > B strictly (0 when the two score the images identically)."""
    p_value: float
    """Share of resamples where A <= B: a one-sided bootstrap p-value for "A beats B"."""
    n_boot: int
    n_images: int
    level: float = LEVEL


def paired_bootstrap(
    scores_a: Any,
    scores_b: Any,
    labels: Any,
    *,
    metric: str = "image_auroc",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> Paired:
    """Resample the test images (stratified by label) once and compare A and B on each resample."""
    if metric not in _IMAGE_METRICS:
        raise ValueError(f"paired_bootstrap: metric must be one of {_IMAGE_METRICS}, got {metric!r}.")
    y = _labels(labels)
    if len(np.ravel(scores_a)) != y.size or len(np.ravel(scores_b)) != y.size:
        raise ValueError("paired_bootstrap: A and B must score the same test images (same lengths as labels).")
    if y.min() == y.max():
        raise ValueError(f"paired_bootstrap: {metric} needs both normal and defective test images.")
    ones = np.ones((1, y.size))
    obs_a = float(image_stats(scores_a, y, ones)[metric][0])
    obs_b = float(image_stats(scores_b, y, ones)[metric][0])
    weights = resample_weights(stratified_indices(y, n_boot, seed), y.size)
    diff = image_stats(scores_a, y, weights)[metric] - image_stats(scores_b, y, weights)[metric]
    lo, hi = _percentile(diff, level)
    return Paired(metric=metric, a=obs_a, b=obs_b, difference=obs_a - obs_b, ci=(lo, hi),
                  p_a_beats_b=float(np.mean(diff > 0)), p_value=float(np.mean(diff <= 0)),
                  n_boot=int(n_boot), n_images=int(y.size), level=float(level))


def paired_from_scores(df_a: pd.DataFrame, df_b: pd.DataFrame, *, name_a: str = "A",
                       name_b: str = "B") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align two scores frames (``path, label, defect, score``) on ``path``.

    Returns:
        ``(scores_a, scores_b, labels)`` in the order of ``df_a``.

    Raises:
        ValueError: naming both methods when the test images differ (paths missing on either
            side, duplicated paths) or when the two frames disagree on a label.
    """
    for name, df in ((name_a, df_a), (name_b, df_b)):
        missing = {"path", "label", "score"} - set(df.columns)
        if missing:
            raise ValueError(f"paired_from_scores: the scores of {name} lack columns {sorted(missing)}.")
        if df["path"].duplicated().any():
            raise ValueError(f"paired_from_scores: the scores of {name} list an image twice "
                             f"({df.loc[df['path'].duplicated(), 'path'].iloc[0]!r}).")
    only_a = sorted(set(df_a["path"]) - set(df_b["path"]))
    only_b = sorted(set(df_b["path"]) - set(df_a["path"]))
    if only_a or only_b:
        raise ValueError(f"paired_from_scores: {name_a} and {name_b} did not score the same test images "
                         f"({len(only_a)} only in {name_a}, e.g. {only_a[:1]}; {len(only_b)} only in "
                         f"{name_b}, e.g. {only_b[:1]}): a paired comparison needs identical test sets.")
    b = df_b.set_index("path").loc[df_a["path"]]
    disagree = df_a["label"].to_numpy(int) != b["label"].to_numpy(int)
    if disagree.any():
        raise ValueError(f"paired_from_scores: {name_a} and {name_b} disagree on the label of "
                         f"{int(disagree.sum())} image(s), e.g. {df_a['path'].to_numpy()[disagree][0]!r}.")
    return (df_a["score"].to_numpy(float), b["score"].to_numpy(float), df_a["label"].to_numpy(int))


# --------------------------------------------------------------------------- results files


def check_intervals(ci: Any, meta: Any) -> tuple[dict[str, list[float] | None], dict[str, Any]]:
    """Validate the ``ci95`` and ``bootstrap`` entries of a results record; return them normalised.

    Raises:
        ValueError: unknown metric, a bound outside [0, 1], ``lo > hi``, or a bootstrap
            description without ``n >= 1`` and ``level == 0.95``.
    """
    if not isinstance(ci, Mapping):
        raise ValueError(f"ci95 must be a dict {{metric: [lo, hi]}}, got {ci!r}.")
    out: dict[str, list[float] | None] = {}
    for key, pair in ci.items():
        if key not in CI_KEYS:
            raise ValueError(f"ci95 names {key!r}; intervals are allowed for {list(CI_KEYS)}.")
        if pair is None:
            out[key] = None
            continue
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) for v in pair)):
            raise ValueError(f"ci95[{key!r}] must be [lo, hi] (two numbers) or null, got {pair!r}.")
        lo, hi = float(pair[0]), float(pair[1])
        if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0) or math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"ci95[{key!r}] = {[lo, hi]} must be fractions in [0, 1].")
        if lo > hi:
            raise ValueError(f"ci95[{key!r}] = {[lo, hi]} has lo > hi.")
        out[key] = [lo, hi]
    if not isinstance(meta, Mapping):
        raise ValueError(f"bootstrap must be a dict (n, seed, level, stratified_by, unit), got {meta!r}.")
    n, level = meta.get("n"), meta.get("level")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"bootstrap.n must be an integer >= 1, got {n!r}.")
    if not isinstance(level, (int, float)) or abs(float(level) - LEVEL) > 1e-12:
        raise ValueError(f"bootstrap.level must be {LEVEL} (the key is ci95), got {level!r}.")
    return out, {str(k): v for k, v in meta.items()}
