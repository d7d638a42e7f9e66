"""Decision rules of notebook 02: how a squared residual becomes an image score and a pixel mask.

A :class:`Rule` names four choices the seed leaves open:

* image score = maximum of the residual smoothed with ``score_sigma`` (0 = unsmoothed);
* segmentation map = the residual dilated by a ``seg_window`` x ``seg_window`` maximum filter
  (0 = the raw residual): a crack lights up a 1-2 px line, the DAGM labels are ellipses tens of
  pixels wide, and the dilation spreads the line's peaks over that scale;
* pixel threshold = the ``pixel_quantile`` quantile of validation-normal map pixels (1.0 = their
  maximum); the image threshold comes from validation-normal scores too;
* ``two_stage``: pixels are marked only in images whose score passes the image threshold.

:func:`choose_rule` picks the rule WITHOUT test data, on a labelled *tuning set*: the defective
DAGM ``Train`` images (never trained on, never tested) plus the validation normals. Thresholds
always come from the validation normals; only the choice of rule uses the tuning labels.
:func:`region_prf` scores a prediction per ground-truth region (found or not);
:func:`residual_contrast` measures whether the skip connections copy defects to the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adlib import maps, metrics, thresholds
from adlib.config import SettingsError

DEFAULTS: dict[str, Any] = {
    "score_sigma": 0.0, "seg_window": 0, "pixel_quantile": 0.999, "two_stage": False,
}
"""A-priori rule, used where no labelled tuning set exists (RSDDs): the seed's plain thresholded
residual (no filtering; the image score is its unsmoothed maximum), with the pixel threshold at the
0.999 quantile of validation-normal pixels (a 0.1 % false-positive rate on normals)."""


@dataclass(frozen=True)
class Rule:
    """How residuals become decisions (see the module docstring).

    Attributes:
        score_sigma: Gaussian sigma of the image-score map (0 = raw residual).
        seg_window: maximum-filter window of the segmentation map (0 = raw residual).
        pixel_quantile: pixel threshold = this quantile of validation-normal map pixels (1.0 = max).
        two_stage: mark pixels only in images whose score passes the image threshold.
        seg_filter: ``"max"`` (dilation, window ``seg_window``) or ``"gauss"`` (Gaussian
            smoothing with sigma ``seg_window``, for comparison).
    """

    score_sigma: float = 0.0
    seg_window: int = 0
    pixel_quantile: float = 0.999
    two_stage: bool = False
    seg_filter: str = "max"

    @classmethod
    def from_settings(cls, cfg: dict) -> Rule:
        """The profile's a-priori rule."""
        return cls(float(cfg["score_sigma"]), int(cfg["seg_window"]),
                   float(cfg["pixel_quantile"]), bool(cfg["two_stage"]))

    def name(self) -> str:
        """Short label, e.g. ``"max21 q0.999 2-stage"``."""
        seg = f"{self.seg_filter}{self.seg_window}" if self.seg_window else "raw"
        q = "max" if self.pixel_quantile >= 1.0 else f"q{self.pixel_quantile:g}"
        return f"{seg} {q}{' 2-stage' if self.two_stage else ''}"


def smooth(values: np.ndarray, sigma: float | None) -> np.ndarray:
    """Gaussian smoothing (``sigma`` in pixels; None or 0 = unchanged)."""
    return maps.gaussian_smooth(values, sigma) if sigma else values


def seg_map(raw: np.ndarray, window: int, kind: str = "max") -> np.ndarray:
    """Segmentation map: (N, H, W) residuals dilated by a ``window`` x ``window`` maximum filter.

    ``window`` 0 or 1 returns ``raw`` unchanged. A grey dilation keeps the height of the thin
    crack peaks (a Gaussian would average them into the texture noise) and widens them.
    ``kind="gauss"`` smooths with a Gaussian of sigma ``window`` instead (for comparison).
    """
    from scipy.ndimage import maximum_filter

    if kind not in ("max", "gauss"):
        raise SettingsError(f"seg_map: kind={kind!r}; use 'max' or 'gauss'.")
    if window <= 1 and kind == "max" or window <= 0:
        return raw
    if kind == "gauss":
        return smooth(raw, float(window))
    return np.stack([maximum_filter(m, size=(int(window), int(window)), mode="reflect") for m in raw])


def score_of(raw: np.ndarray, sigma: float) -> np.ndarray:
    """Image scores: maximum of the residual smoothed with ``sigma`` (0 = unsmoothed)."""
    return np.asarray(maps.image_scores(smooth(raw, sigma), "max"), dtype=np.float64)


def pixel_threshold(val_maps: np.ndarray, quantile: float) -> thresholds.Threshold:
    """Pixel threshold from validation-normal maps only (``quantile`` 1.0 = their maximum)."""
    if quantile >= 1.0:
        return thresholds.threshold_from_normal(val_maps, method="max")
    return thresholds.threshold_from_normal(val_maps, method="quantile", q=quantile)


def predict_masks(values: np.ndarray, pixel_t: float, scores: np.ndarray | None = None,
                  image_t: float | None = None) -> np.ndarray:
    """Boolean masks ``values > pixel_t``; with ``scores``/``image_t`` (two-stage) only in images
    whose score exceeds ``image_t``."""
    pred = values > float(pixel_t)
    if scores is not None and image_t is not None:
        pred &= (np.asarray(scores) > float(image_t))[:, None, None]
    return pred


def gate_maps(values: np.ndarray, pixel_t: float, scores: np.ndarray, image_t: float) -> np.ndarray:
    """The two-stage decision map: values of images that fail the image threshold are capped at
    ``pixel_t``, so ``gate_maps(...) > pixel_t`` is exactly the two-stage prediction."""
    keep = (np.asarray(scores) > float(image_t))[:, None, None]
    return np.where(keep, values, np.minimum(values, np.float32(pixel_t)))


@dataclass
class Decision:
    """One rule applied to test and validation residuals (thresholds from the validation normals)."""

    maps: np.ndarray
    """The decision map: the segmentation map, gated when the rule is two-stage."""
    val_maps: np.ndarray
    scores: np.ndarray
    val_scores: np.ndarray
    pixel_threshold: thresholds.Threshold
    image_threshold: thresholds.Threshold


def decide(rule: Rule, raw: np.ndarray, val_raw: np.ndarray, image_method: str,
           cache: dict | None = None) -> Decision:
    """Apply ``rule`` to residuals ``raw`` with thresholds from the validation residuals ``val_raw``.

    Args:
        image_method: ``threshold_from_normal`` method of the image threshold (``"max"``).
        cache: reuse maps and scores across rules with the same filter / sigma (grid search;
            only for the same ``raw`` and ``val_raw``).
    """
    key = (rule.seg_window, rule.seg_filter)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = (seg_map(raw, *key), seg_map(val_raw, *key))
    if rule.score_sigma not in cache:
        cache[rule.score_sigma] = (score_of(raw, rule.score_sigma), score_of(val_raw, rule.score_sigma))
    (seg, val_seg), (scores, val_scores) = cache[key], cache[rule.score_sigma]
    t_pix = pixel_threshold(val_seg, rule.pixel_quantile)
    t_img = thresholds.threshold_from_normal(val_scores, method=image_method)
    if rule.two_stage:
        seg = gate_maps(seg, t_pix.value, scores, t_img.value)
    return Decision(seg, val_seg, scores, val_scores, t_pix, t_img)


def residual_contrast(raw_maps: np.ndarray, masks: np.ndarray) -> float | None:
    """Mean residual on defect pixels divided by the mean on defect-free pixels (test set).

    About 1 means the residual carries no defect signal (e.g. an autoencoder that learned the
    identity through its skip connections); much larger is good. None without defect pixels.
    """
    defect = masks.astype(bool)
    if not defect.any() or defect.all():
        return None
    normal = float(raw_maps[~defect].mean())
    return float(raw_maps[defect].mean()) / max(normal, 1e-12)


def region_prf(pred: np.ndarray, masks: np.ndarray) -> dict[str, float | int | None]:
    """Region-level detection precision / recall / F1 (8-connected regions).

    A ground-truth region (e.g. a DAGM ellipse) is *found* when at least one predicted pixel lies
    in it; a predicted region is *correct* when it touches a ground-truth region. Recall = found /
    ground-truth regions, precision = correct / predicted regions (over all images, defect-free
    ones included). This is our reading of how a detection F1 near the seed's 0.96 could arise;
    the seed does not define its F1.
    """
    from scipy.ndimage import label

    eight = np.ones((3, 3), int)
    n_gt = found = n_pred = correct = 0
    for p, g in zip(np.asarray(pred, bool), np.asarray(masks, bool), strict=True):
        lg, k = label(g, structure=eight)
        n_gt += k
        if k:
            found += len(np.unique(lg[p & (lg > 0)]))
        lp, k = label(p, structure=eight)
        n_pred += k
        if k:
            correct += len(np.unique(lp[g & (lp > 0)]))
    rec = found / n_gt if n_gt else None
    prec = correct / n_pred if n_pred else None
    f1 = (2 * prec * rec / (prec + rec) if prec is not None and rec is not None and prec + rec > 0
          else (0.0 if n_gt else None))
    return {"region_f1": f1, "region_precision": prec, "region_recall": rec,
            "n_gt_regions": n_gt, "n_pred_regions": n_pred}


def choose_rule(val_raw: np.ndarray, tune_raw: np.ndarray | None, tune_masks: np.ndarray | None,
                cfg: dict) -> tuple[Rule, pd.DataFrame, str]:
    """Pick the decision rule WITHOUT test data.

    The tuning set is the validation normals (label 0, empty masks) plus ``tune_raw`` (residuals
    of labelled defective images that are neither training nor test images). First the score
    sigma with the best tuning-set image AUROC (ties: the smaller sigma), then the segmentation
    window / pixel quantile / two-stage flag with the best tuning-set pixel F1 (ties: the first
    in grid order). Thresholds always come from the validation normals.

    Returns:
        ``(rule, table of every candidate, source)``; with no tuning set (or ``cfg["tune"]``
        False) the a-priori :meth:`Rule.from_settings` and an empty table.
    """
    default = Rule.from_settings(cfg)
    if not cfg.get("tune") or tune_raw is None or tune_masks is None or not len(tune_raw):
        return default, pd.DataFrame(), "fixed a priori (no labelled tuning set)"
    raw = np.concatenate([val_raw, tune_raw])
    masks = np.concatenate([np.zeros(val_raw.shape, bool), np.asarray(tune_masks, bool)])
    labels = np.r_[np.zeros(len(val_raw), int), np.ones(len(tune_raw), int)]
    rows, best_auc, sigma = [], -1.0, float(cfg["score_sigma"])
    for s in cfg["tune_score_sigmas"]:
        auc = metrics.image_auroc(score_of(raw, s), labels)
        rows.append({"step": "image score", "score_sigma": s, "tune_image_auroc": auc})
        if auc is not None and auc > best_auc + 1e-9:
            best_auc, sigma = auc, float(s)
    best, best_f1 = default, -1.0
    for window in cfg["tune_seg_windows"]:
        cache: dict = {}
        for q in cfg["tune_pixel_quantiles"]:
            for two in (False, True):
                rule = Rule(sigma, int(window), float(q), two)
                d = decide(rule, raw, val_raw, cfg["threshold_method"], cache)
                f1 = float(metrics.pixel_prf(d.maps, masks, d.pixel_threshold.value).f1)
                rows.append({"step": "segmentation", "score_sigma": sigma, "rule": rule.name(),
                             "seg_window": int(window), "pixel_quantile": float(q),
                             "two_stage": two, "tune_pixel_f1": f1})
                if f1 > best_f1 + 1e-9:
                    best, best_f1 = rule, f1
    src = (f"chosen on the tuning set ({len(tune_raw)} labelled defective Train images + "
           f"{len(val_raw)} validation normals; no test image)")
    return best, pd.DataFrame(rows), src
