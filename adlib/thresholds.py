"""Decision thresholds: honest ones from defect-free validation data, and a labelled oracle.

The MVTec AD journal paper (Bergmann et al., IJCV 2021) picks segmentation thresholds from
anomaly-free validation images only. :func:`threshold_from_normal` implements three such rules:

* ``"max"``: the largest normal value (no false positive on the validation data);
* ``"quantile"``: the ``q``-quantile of the normal values (a target false-positive rate ``1 - q``);
* ``"k_sigma"``: mean + ``k`` standard deviations of the normal values.

:func:`threshold_from_normal_regions` is the journal paper's own rule for segmentation: the
lowest threshold at which no defect-free validation map has a connected "defect" region as large
as a minimum defect area. Isolated bright pixels (edges, texture) do not count against it, only
blobs, so it sits lower than a pixel quantile on maps with a heavy but speckled tail (1 - SSIM).

:func:`threshold_from_normal_tail` extrapolates instead of counting: it fits a generalised Pareto
distribution to the exceedances of the normal values over a high quantile (peaks over threshold,
extreme-value theory) and inverts the fitted tail at a target false-alarm rate, so that a rate
of 1e-4 is usable even where the validation set holds few pixels that far out.

Their signatures accepts one array of normal values and keyword options, nothing else: there is no
place for labels or masks, so test data cannot leak into the threshold.

:func:`oracle_best_f1_threshold` looks at test labels to find the best possible F1. It is for
showing how far the honest threshold is from the optimum; its source is always ``"oracle-test"``,
and it must never be reported without that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from adlib import metrics

__all__ = [
    "ThresholdError", "Threshold", "threshold_from_normal", "threshold_from_normal_regions",
    "largest_region", "region_scores", "oracle_best_f1_threshold", "threshold_from_normal_tail",
]

ORACLE_SOURCE = "oracle-test"


class ThresholdError(ValueError):
    """Raised for data that a threshold estimator refuses (labels, masks, NaN, empty)."""


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and where it came from.

    Attributes:
        value: values strictly above it are predicted anomalous.
        source: e.g. ``"normal-validation:quantile-0.99"`` or ``"oracle-test"``.
    """

    value: float
    source: str

    def __float__(self) -> float:
        return float(self.value)

    @property
    def is_oracle(self) -> bool:
        """True if the threshold was chosen with test labels."""
        return self.source.startswith("oracle")

    def predict(self, values) -> np.ndarray:
        """Boolean prediction ``values > value`` (maps or scores)."""
        arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        return arr > self.value


def _normal_values(values) -> np.ndarray:
    """Flatten normal maps/scores to float64, refusing anything that looks like labels or masks."""
    if hasattr(values, "columns") and ({"label", "mask", "defect"} & {str(c) for c in values.columns}):
        raise ThresholdError(
            "adlib.thresholds: got a table with label/defect/mask columns. Pass only the anomaly "
            "values of DEFECT-FREE validation images (e.g. df.loc[df.label == 0, 'score'] of a "
            "validation split, never the test split)."
        )
    if isinstance(values, dict):
        raise ThresholdError("adlib.thresholds: pass an array of normal values, not a dict.")
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, (list, tuple)) and values and all(np.ndim(v) >= 1 for v in values):
        arr = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
        dtypes = {np.asarray(v).dtype for v in values}
    else:
        raw = np.asarray(values)
        dtypes = {raw.dtype}
        arr = raw.astype(np.float64).ravel()
    if any(np.issubdtype(d, np.bool_) for d in dtypes):
        raise ThresholdError(
            "adlib.thresholds: got boolean data, which looks like a mask or labels. Pass anomaly "
            "maps or scores of defect-free validation images."
        )
    if arr.size == 0:
        raise ThresholdError("adlib.thresholds: no normal values given (empty validation set?).")
    if not np.isfinite(arr).all():
        raise ThresholdError("adlib.thresholds: normal values contain NaN or inf.")
    return arr


def threshold_from_normal(
    values,
    /,
    *,
    method: Literal["max", "quantile", "k_sigma"] = "quantile",
    q: float = 0.99,
    k: float = 3.0,
) -> Threshold:
    """Threshold estimated from defect-free validation data only.

    Args:
        values: anomaly maps (any shape) or image scores of DEFECT-FREE validation images, as a
            numpy array, tensor, or list of arrays. Nothing else is accepted.
        method: ``"max"``, ``"quantile"`` (``q``) or ``"k_sigma"`` (mean + ``k`` std).
        q: quantile in (0, 1) for ``"quantile"``.
        k: number of standard deviations for ``"k_sigma"``.

    Returns:
        A :class:`Threshold` with source ``"normal-validation:<method>"``.
    """
    arr = _normal_values(values)
    if method == "max":
        return Threshold(float(arr.max()), "normal-validation:max")
    if method == "quantile":
        if not 0 < q < 1:
            raise ThresholdError(f"adlib.thresholds: q must be in (0, 1), got {q} (0.99, not 99).")
        return Threshold(float(np.quantile(arr, q)), f"normal-validation:quantile-{q:g}")
    if method == "k_sigma":
        if k < 0:
            raise ThresholdError(f"adlib.thresholds: k must be >= 0, got {k}.")
        return Threshold(float(arr.mean() + k * arr.std()), f"normal-validation:k_sigma-{k:g}")
    raise ThresholdError(
        f"adlib.thresholds: unknown method {method!r}; use 'max', 'quantile' or 'k_sigma'."
    )


def threshold_from_normal_tail(
    values, /, *, rate: float = 1e-3, tail_q: float | None = None, max_fit: int = 20_000, seed: int = 0,
) -> Threshold:
    """Peaks over threshold: the value a fitted generalised Pareto tail exceeds with probability ``rate``.

    The exceedances ``x - u`` of the normal values over ``u`` (their ``tail_q``-quantile) are fitted
    with ``scipy.stats.genpareto`` (location 0, shape and scale by maximum likelihood, on at most
    ``max_fit`` of them drawn at random with ``seed``); the threshold is
    ``u + GPD.ppf(1 - rate / p_u)`` with ``p_u`` the share of values above ``u``.

    Args:
        values: anomaly maps or scores of DEFECT-FREE validation images (nothing else accepted).
        rate: target false-alarm rate per value (pixel), in (0, 1 - tail_q).
        tail_q: the quantile where the tail starts (None: ``1 - 10 * rate``, so ten times as many
            values lie beyond ``u`` as the target flags).
        max_fit: at most this many exceedances enter the fit (speed).
        seed: which exceedances, when there are more than ``max_fit``.

    Returns:
        A :class:`Threshold` with source ``"normal-validation:tail-<rate>"``. With fewer than 20
        exceedances (or a failed fit) the empirical ``1 - rate`` quantile is returned instead, with
        source ``"normal-validation:tail-<rate>-empirical"``.
    """
    from scipy import stats

    arr = _normal_values(values)
    tail_q = 1.0 - 10.0 * rate if tail_q is None else float(tail_q)
    if not 0 < tail_q < 1:
        raise ThresholdError(f"adlib.thresholds: tail_q must be in (0, 1), got {tail_q} (rate {rate}).")
    if not 0 < rate < 1 - tail_q:
        raise ThresholdError(
            f"adlib.thresholds: rate must be in (0, 1 - tail_q) = (0, {1 - tail_q:g}), got {rate}; "
            "lower the rate or the tail quantile tail_q.")
    source = f"normal-validation:tail-{rate:g}"
    u = float(np.quantile(arr, tail_q))
    excess = arr[arr > u] - u
    if excess.size < 20:
        return Threshold(float(np.quantile(arr, 1 - rate)), source + "-empirical")
    p_u = excess.size / arr.size
    if excess.size > max_fit:
        excess = np.random.default_rng(seed).choice(excess, int(max_fit), replace=False)
    scale = float(excess.std()) or 1.0  # fit on a unit scale: maps of 1e-4 values fit badly
    try:
        shape, _, sigma = stats.genpareto.fit(excess / scale, floc=0)
        value = u + scale * float(stats.genpareto.ppf(1 - rate / p_u, shape, loc=0, scale=sigma))
    except (ValueError, RuntimeError, FloatingPointError):
        value = float("nan")
    if not np.isfinite(value):
        return Threshold(float(np.quantile(arr, 1 - rate)), source + "-empirical")
    return Threshold(value, source)


def largest_region(binary: np.ndarray) -> int:
    """Pixels in the largest 8-connected region of a 2-D boolean image (0 when empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return 0
    return int(np.bincount(labels.ravel())[1:].max())


def _region_threshold(m: np.ndarray, min_area: int, max_steps: int) -> float:
    """Lowest value t of one map such that ``m > t`` has no region of ``min_area`` pixels."""
    values = np.unique(m.astype(np.float64))

    def ok(t: float) -> bool:
        return largest_region(m > t) < min_area

    if ok(values[0]):
        return float(values[0])
    lo, hi = 0, len(values) - 1  # invariant: not ok(values[lo]), ok(values[hi]) (nothing above max)
    for _ in range(max_steps):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        if ok(values[mid]):
            hi = mid
        else:
            lo = mid
    return float(values[hi])


def region_scores(maps, /, *, min_area: int, max_steps: int = 40) -> np.ndarray:
    """Per map: the lowest threshold at which it has no connected region of ``min_area`` pixels.

    In other words the value at which a ``min_area`` blob first appears as the threshold falls:
    an image score that ignores isolated bright pixels.
    """
    arr = np.asarray(maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else maps)
    _normal_values(arr)  # refuses masks, labels, empties, NaN
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ThresholdError(
            f"adlib.thresholds: region rule needs (N, H, W) maps, got shape {arr.shape}.")
    if int(min_area) < 1:
        raise ThresholdError(f"adlib.thresholds: min_area must be >= 1 pixel, got {min_area}.")
    return np.array([_region_threshold(m, int(min_area), max_steps) for m in arr])


def threshold_from_normal_regions(maps, /, *, min_area: int, q: float = 1.0) -> Threshold:
    """Threshold at which (a share ``q`` of) the defect-free validation maps show no defect region.

    The MVTec AD paper's segmentation rule (``q=1``): raise the threshold until the largest
    connected anomalous region on the anomaly-free validation images is smaller than the minimum
    defect area. With few validation images one unusual normal image then decides alone; ``q < 1``
    takes the ``q``-quantile of the per-image thresholds (:func:`region_scores`) instead, i.e.
    accepts a false defect region on about ``1 - q`` of the normal images.

    Args:
        maps: (N, H, W) anomaly maps of DEFECT-FREE validation images (nothing else accepted).
        min_area: minimum defect area in pixels (at the maps' resolution), >= 1. With
            ``min_area=1, q=1`` this is the ``"max"`` rule.
        q: share of validation images that must be free of false regions, in (0, 1].

    Returns:
        A :class:`Threshold` with source ``"normal-validation:region-<min_area>px"`` (``q=1``) or
        ``"normal-validation:region-<min_area>px-q<q>"``.
    """
    if not 0 < q <= 1:
        raise ThresholdError(f"adlib.thresholds: q must be in (0, 1], got {q}.")
    per_image = region_scores(maps, min_area=min_area)
    value = float(per_image.max()) if q == 1 else float(np.quantile(per_image, q))
    source = f"normal-validation:region-{int(min_area)}px" + ("" if q == 1 else f"-q{q:g}")
    return Threshold(value, source)


def oracle_best_f1_threshold(
    maps_or_scores, masks_or_labels, *, n_bins: int = 10_000, exact: bool | None = None
) -> Threshold:
    """ORACLE: the threshold with the best F1 on the data given (normally the test set).

    Args:
        maps_or_scores: (N, H, W) maps or (N,) image scores.
        masks_or_labels: matching (N, H, W) masks or (N,) labels.
        n_bins, exact: threshold grid for large pixel sets (see :func:`adlib.metrics.threshold_grid`).

    Returns:
        ``Threshold(value, "oracle-test")``: an upper bound to report next to an honest threshold.
    """
    m = np.asarray(maps_or_scores.detach().cpu().numpy() if isinstance(maps_or_scores, torch.Tensor)
                   else maps_or_scores)
    g = np.asarray(masks_or_labels.detach().cpu().numpy() if isinstance(masks_or_labels, torch.Tensor)
                   else masks_or_labels)
    if m.ndim == 1:  # image scores: treat as N maps of one pixel
        m, g = m.reshape(-1, 1, 1), g.reshape(-1, 1, 1)
    grid = metrics.threshold_grid(m, n_bins, exact)
    neg, pos, _ = metrics.pixel_counts(m, g, grid)
    if pos.sum() == 0:
        raise ThresholdError("adlib.thresholds: no defective pixel/image, an F1 oracle is undefined.")
    value, _ = metrics.best_f1_from_counts(grid, neg, pos)
    return Threshold(value, ORACLE_SOURCE)
