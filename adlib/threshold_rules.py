"""Which validation-only pixel-threshold rule to trust, chosen on the validation maps alone.

Four rules turn the anomaly maps of DEFECT-FREE validation images into a pixel threshold
(:mod:`adlib.thresholds`), all aimed at one target false-alarm rate per normal pixel, ``rate``
(each pipeline's own, e.g. 0.001 for a 0.999 pixel quantile):

* ``"quantile"``: the ``1 - rate`` quantile of the validation pixels (counts);
* ``"tail"``: a generalised Pareto tail fitted to the exceedances over a high quantile and
  inverted at ``rate`` (peaks over threshold; extrapolates);
* ``"k_sigma"``: mean + k sd with ``k`` the Gaussian ``1 - rate`` quantile (3.09 for 0.001);
* ``"region"``: the MVTec AD paper's rule: the ``region_q`` quantile of the per-image thresholds
  below which a normal map shows a connected region of ``min_area`` pixels (no pixel rate);
* ``"image_max"``: the ``image_q`` quantile of the validation maps' per-image MAXIMA: a
  defect-free image shows any defect pixel about as often as ``1 - image_q`` (the image-level
  false-alarm rate), so the pixel decision agrees with an image decision by the map's maximum.
  Not among ``"auto"``'s candidates (:data:`AUTO_RULES`); it is the default where the image
  score IS the map's maximum (notebook 06's PaDiM, and PatchCore's smoothed map nearly so):
  there a pixel threshold below the image threshold would mark defect pixels in images the
  same run calls defect-free. Its cost is independent of the map size; a per-pixel rate is not:
  0.001 of a 512x512 map is 262 false pixels per defect-free image, of a 224x224 one 50.

**The default (``"auto"``) is chosen per run, per map, from the validation maps only**
(:func:`choose_rule`): the defect-free validation images are split at random into two halves
(``n_splits`` times, each half in turn the fitting half); each rule is fitted on one half and
checked on the other against the false-alarm rate it promises: for the pixel rules the share of
held-out normal pixels above the threshold against ``rate``; for the region rule the share of
held-out normal images with a false region of ``min_area`` pixels against ``1 - region_q``. The
transfer error is ``|log(observed / promised)|`` (counts smoothed by one half, so that an empty
count is finite), averaged over the ``2 * n_splits`` fits; the rule with the smallest mean error
becomes ``"auto"`` (ties: the order of :data:`AUTO_RULES`). Measuring against the promise, not against
the rate reached on the fitting half, matters: a threshold far too low reaches the same high rate
on both halves and would look stable. Few validation images make the image-level check of the
region rule coarse (one image of six is 17 %), which counts against it, rightly: its promise
cannot be checked better than that.
No test image, label or mask enters the choice; the test masks are used only afterwards, by
:func:`rule_table`, to report each rule's pixel F1 next to the ORACLE (best F1 on the test set).

Which rule this criterion picked for each map kind is recorded in the results files
(``params["threshold_rule_auto"]``) and summarised in notebook 05. Nothing here was tuned: the
rate is each pipeline's existing pixel quantile, ``tail_q``, ``N_SPLITS`` and the smoothing were
fixed a priori. Measured (cpu profile, seed 0, 2026-12-02; ratio = honest / ORACLE pixel F1):

* real DAGM Class8 dev kit, UNet residuals (notebook 02): auto picked the quantile for
  ``unet-ae`` (0.90) and the tail for ``-deepskip`` (0.78) and ``-noskip`` (0.90); k-sigma
  0.15-0.30 (its Gaussian k flags far more than the rate on these heavy-tailed maps); region
  0.25-0.99.
* stand-ins: conv-AE L2 residual picked region (0.99), 1 - SSIM picked quantile (0.97).
  With fewer than 4 validation images (the RSDD stand-in) no split is possible: quantile.

So the default is ``"auto"`` per run rather than one fixed rule per map kind: the pick
changed with the map (residual, SSIM, skip variant) and no single rule was best everywhere.

The exception is the feature-embedding maps of notebook 06, whose image score is the map's
maximum: there ``image_max`` is the default (see the rule's entry above). Its measured reason
(cpu profile, 2026-12-02): on the real DAGM Class8 dev kit PaDiM's auto pick (the tail) kept its
promise (0.0012 of the test normals' pixels above it against 0.001), yet at 512x512 that is 262
false pixels per defect-free image: precision 0.26, ratio 0.66. ``image_max`` gave 0.91 there,
and on the bottle/hazelnut/RSDD-like stand-ins 0.77-1.00 where auto gave 0.67-1.00; it is lower
than auto on carpet-like PatchCore (0.91 vs 0.94), on the DAGM-like stand-in, where both models
fail (ORACLE F1 0.25 / 0.13: PaDiM 0.58 vs 1.00, PatchCore 0.25 vs 0.83), and on real DAGM
PatchCore (0.81 vs 0.88).
For the residual maps of notebooks 01-04 it is only reported: their image score is not the map's
maximum, and a per-image maximum of a pixel-noisy residual sits far in its tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adlib import metrics, thresholds

__all__ = ["AUTO_RULES", "RULES", "RuleSpec", "all_thresholds", "choose_rule", "fit_rules",
           "image_max_threshold", "rule_table"]

RULES: tuple[str, ...] = ("quantile", "tail", "k_sigma", "region", "image_max")
"""Every validation-only rule (fitted, and reported beside the ORACLE, for every map)."""
AUTO_RULES: tuple[str, ...] = ("quantile", "tail", "k_sigma", "region")
"""The candidates of ``"auto"`` (:func:`choose_rule`), in the order that breaks its ties."""
N_SPLITS = 5
"""Random halvings of the validation images in :func:`choose_rule` (each half fits once)."""


@dataclass(frozen=True)
class RuleSpec:
    """The options of the four rules (see the module docstring).

    Attributes:
        rate: target false-alarm rate per normal pixel of the pixel rules, in (0, 0.1).
        min_area: the region rule's minimum defect area in pixels (>= 1).
        region_q: share of validation images the region rule keeps free of false regions.
        tail_q: where the fitted tail starts (None: ``1 - 10 * rate``).
        image_q: share of validation images whose maximum stays below the ``image_max`` rule
            (the pipeline's image-threshold quantile).
    """

    rate: float = 1e-3
    min_area: int = 8
    region_q: float = 0.9
    tail_q: float | None = None
    image_q: float = 0.95

    @classmethod
    def for_maps(cls, maps_shape: tuple[int, ...], *, rate: float = 1e-3, area_fraction: float = 0.002,
                 region_q: float = 0.9, tail_q: float | None = None, image_q: float = 0.95) -> RuleSpec:
        """A spec whose region area is ``area_fraction`` of one map (at least 2 pixels)."""
        h, w = maps_shape[-2], maps_shape[-1]
        return cls(float(rate), max(2, round(area_fraction * h * w)), float(region_q), tail_q,
                   float(image_q))

    @property
    def k(self) -> float:
        """The k of the k-sigma rule: the standard normal ``1 - rate`` quantile."""
        from scipy.stats import norm

        return float(norm.isf(self.rate))


def _check_maps(val_maps: Any) -> np.ndarray:
    arr = np.asarray(val_maps)
    if arr.ndim != 3 or len(arr) < 1:
        raise thresholds.ThresholdError(
            f"adlib.threshold_rules: need (N, H, W) validation maps, got shape {arr.shape}.")
    return arr


def _quantile_or_max(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile of per-image values (their largest value for ``q >= 1``)."""
    return float(values.max()) if q >= 1 else float(np.quantile(values, q))


def image_max_threshold(val_maps: np.ndarray, image_q: float) -> thresholds.Threshold:
    """The ``image_max`` rule: the ``image_q`` quantile (the largest value for ``image_q >= 1``)
    of the per-image maxima of DEFECT-FREE validation maps."""
    arr = _check_maps(val_maps)
    maxima = arr.reshape(len(arr), -1).max(axis=1).astype(np.float64)
    return thresholds.Threshold(_quantile_or_max(maxima, image_q), f"normal-validation:image-max-q{image_q:g}")


def fit_rules(val_maps: np.ndarray, spec: RuleSpec, *, per_image: np.ndarray | None = None,
              rules: tuple[str, ...] = RULES) -> dict[str, thresholds.Threshold]:
    """Each rule's threshold from DEFECT-FREE validation maps only (no labels, no masks).

    Args:
        val_maps: (N, H, W) maps of defect-free validation images.
        spec: the rules' options.
        per_image: the region rule's per-image thresholds of these maps, if already computed.
        rules: which rules.
    """
    arr = _check_maps(val_maps)
    out: dict[str, thresholds.Threshold] = {}
    for rule in rules:
        if rule == "quantile":
            out[rule] = thresholds.threshold_from_normal(arr, method="quantile", q=1 - spec.rate)
        elif rule == "k_sigma":
            out[rule] = thresholds.threshold_from_normal(arr, method="k_sigma", k=spec.k)
        elif rule == "tail":
            out[rule] = thresholds.threshold_from_normal_tail(arr, rate=spec.rate, tail_q=spec.tail_q)
        elif rule == "image_max":
            out[rule] = image_max_threshold(arr, spec.image_q)
        elif rule == "region":
            if per_image is None:
                out[rule] = thresholds.threshold_from_normal_regions(
                    arr, min_area=spec.min_area, q=spec.region_q)
            else:
                source = f"normal-validation:region-{spec.min_area}px" + (
                    "" if spec.region_q >= 1 else f"-q{spec.region_q:g}")
                out[rule] = thresholds.Threshold(_quantile_or_max(per_image, spec.region_q), source)
        else:
            raise thresholds.ThresholdError(
                f"adlib.threshold_rules: unknown rule {rule!r}; use one of {RULES}.")
    return out


def _rate(values: np.ndarray, t: float) -> float:
    """Share of values above ``t``, counts smoothed by one half (never exactly 0)."""
    return (float((values > t).sum()) + 0.5) / (values.size + 1.0)


def _promised(rule: str, spec: RuleSpec, n_held: int) -> float:
    """The false-alarm rate a rule promises (region / image_max: images with a false region / a
    maximum above it; else pixels)."""
    if rule not in ("region", "image_max"):
        return spec.rate
    q = spec.region_q if rule == "region" else spec.image_q
    return max(1.0 - q, 0.5 / (n_held + 1.0))


@dataclass
class Choice:
    """The outcome of :func:`choose_rule`."""

    rule: str
    """The rule with the smallest mean transfer error."""
    errors: dict[str, float]
    """Mean ``|log(observed / promised false-alarm rate)|`` on held-out halves, per rule."""
    spread: dict[str, float]
    """Standard deviation of that error per rule."""
    n_splits: int


def choose_rule(val_maps: np.ndarray, spec: RuleSpec, *, n_splits: int = N_SPLITS, seed: int = 0,
                per_image: np.ndarray | None = None, rules: tuple[str, ...] = AUTO_RULES) -> Choice:
    """Pick the rule whose false-alarm rate transfers best between halves of the validation maps.

    Only defect-free validation maps enter (see the module docstring). With fewer than 4
    validation images no split is possible and the first of ``rules`` is returned.
    """
    arr = _check_maps(val_maps)
    n = len(arr)
    if n < 4:
        return Choice(rules[0], {}, {}, 0)
    if per_image is None and "region" in rules:
        per_image = thresholds.region_scores(arr, min_area=spec.min_area)
    rng = np.random.default_rng(seed)
    errs: dict[str, list[float]] = {r: [] for r in rules}
    for _ in range(int(n_splits)):
        perm = rng.permutation(n)
        halves = (perm[: n // 2], perm[n // 2:])
        for fit, held in (halves, halves[::-1]):
            fitted = fit_rules(arr[fit], spec, rules=rules,
                               per_image=None if per_image is None else per_image[fit])
            for rule, t in fitted.items():
                if rule == "region":
                    seen = _rate(per_image[held], t.value)
                elif rule == "image_max":
                    seen = _rate(arr[held].reshape(len(held), -1).max(axis=1), t.value)
                else:
                    seen = _rate(arr[held], t.value)
                errs[rule].append(abs(np.log(seen / _promised(rule, spec, len(held)))))
    mean = {r: float(np.mean(v)) for r, v in errs.items()}
    best = min(rules, key=lambda r: (round(mean[r], 9), rules.index(r)))
    return Choice(best, mean, {r: float(np.std(v)) for r, v in errs.items()}, int(n_splits))


def all_thresholds(val_maps: np.ndarray, spec: RuleSpec, *, seed: int = 0
                   ) -> tuple[dict[str, thresholds.Threshold], Choice]:
    """Every rule's threshold plus ``"auto"`` (the :func:`choose_rule` pick, its source says
    which rule), from the defect-free validation maps only; and the choice itself."""
    arr = _check_maps(val_maps)
    per_image = thresholds.region_scores(arr, min_area=spec.min_area)
    fitted = fit_rules(arr, spec, per_image=per_image)
    choice = choose_rule(arr, spec, seed=seed, per_image=per_image)
    pick = fitted[choice.rule]
    fitted["auto"] = thresholds.Threshold(pick.value, f"{pick.source} (auto: best transfer between "
                                                      "validation halves)")
    return fitted, choice


def rule_table(test_maps: np.ndarray, test_masks: np.ndarray, fitted: dict[str, thresholds.Threshold],
               choice: Choice | None, oracle_f1: float | None) -> dict[str, dict[str, Any]]:
    """Each honest rule's pixel P/R/F1 on the TEST set (for reporting only) beside the ORACLE.

    Returns ``{rule: {threshold, source, pixel_f1, pixel_precision, pixel_recall,
    f1_over_oracle, transfer_error}}``; the thresholds were fixed before the masks are looked at.
    """
    out: dict[str, dict[str, Any]] = {}
    for rule, t in fitted.items():
        prf = metrics.pixel_prf(test_maps, test_masks, t.value).as_dict("pixel_")
        f1 = prf.get("pixel_f1")
        base = rule if rule in RULES else (choice.rule if choice else None)
        out[rule] = {
            "threshold": float(t.value), "source": t.source, **prf,
            "f1_over_oracle": (float(f1) / oracle_f1 if f1 is not None and oracle_f1 else None),
            "transfer_error": (choice.errors.get(base) if choice and base else None),
        }
    return out
