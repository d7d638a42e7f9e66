"""Tests for adlib.thresholds: validation-only estimators and the labelled oracle."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch

from adlib import metrics as M
from adlib.thresholds import (
    Threshold,
    ThresholdError,
    largest_region,
    oracle_best_f1_threshold,
    region_scores,
    threshold_from_normal,
    threshold_from_normal_regions,
)


def test_estimators_values_and_sources():
    rng = np.random.default_rng(0)
    normal = rng.normal(0.2, 0.05, (5, 16, 16)).astype(np.float32)
    flat = normal.astype(np.float64).ravel()
    t = threshold_from_normal(normal, method="max")
    assert t.value == pytest.approx(flat.max()) and t.source == "normal-validation:max"
    t = threshold_from_normal(normal, method="quantile", q=0.99)
    assert t.value == pytest.approx(np.quantile(flat, 0.99)) and t.source == "normal-validation:quantile-0.99"
    t = threshold_from_normal(torch.from_numpy(normal), method="k_sigma", k=3)
    assert t.value == pytest.approx(flat.mean() + 3 * flat.std())
    assert t.source == "normal-validation:k_sigma-3" and not t.is_oracle
    # a list of maps of different sizes is fine (e.g. several validation images)
    t2 = threshold_from_normal([normal[0], normal[1:, :8]], method="max")
    assert t2.value == pytest.approx(max(normal[0].max(), normal[1:, :8].max()))
    # on the normal data itself the quantile threshold flags about 1 %
    q = threshold_from_normal(normal, method="quantile", q=0.99)
    assert (q.predict(normal).mean()) == pytest.approx(0.01, abs=0.005)
    assert float(q) == q.value


def test_signature_has_no_place_for_labels_or_masks():
    params = inspect.signature(threshold_from_normal).parameters
    assert list(params) == ["values", "method", "q", "k"]
    assert params["values"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("method", "q", "k"))
    normal = np.random.default_rng(1).random(100)
    with pytest.raises(TypeError):
        threshold_from_normal(normal, labels=np.zeros(100))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        threshold_from_normal(normal, np.zeros(100))  # type: ignore[misc]


def test_refuses_masks_labels_and_bad_values():
    with pytest.raises(ThresholdError, match="mask"):
        threshold_from_normal(np.zeros((2, 4, 4), bool))
    df = pd.DataFrame({"score": [0.1, 0.9], "label": [0, 1]})
    with pytest.raises(ThresholdError, match="label"):
        threshold_from_normal(df)
    with pytest.raises(ThresholdError, match="NaN"):
        threshold_from_normal(np.array([0.1, np.nan]))
    with pytest.raises(ThresholdError, match="empty"):
        threshold_from_normal(np.array([]))
    with pytest.raises(ThresholdError, match="0.99, not 99"):
        threshold_from_normal(np.array([0.1, 0.2]), method="quantile", q=99)


class _Poison:
    """Stands for test data: any attempt to read it fails loudly."""

    def __getattribute__(self, name):
        raise AssertionError(f"test data was touched ({name})")

    def __len__(self):
        raise AssertionError("test data was touched (len)")

    def __iter__(self):
        raise AssertionError("test data was touched (iter)")


def test_test_data_never_reaches_the_estimator():
    rng = np.random.default_rng(2)
    normal_val = rng.random((4, 8, 8))
    test_maps = _Poison()
    with pytest.raises(AssertionError):
        threshold_from_normal(test_maps)  # the poison would catch a leak into the estimator
    # the honest pipeline: only the validation maps go in, the poison stays untouched
    t = threshold_from_normal(normal_val, method="quantile", q=0.95)
    # and the result does not depend on whatever the test set holds
    assert t == threshold_from_normal(normal_val.copy(), method="quantile", q=0.95)


def test_oracle_is_labelled_and_optimal():
    rng = np.random.default_rng(3)
    maps = rng.random((6, 10, 10)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[:3, 2:6, 2:6] = True
    maps[masks] += 0.4
    t = oracle_best_f1_threshold(maps, masks)
    assert isinstance(t, Threshold) and t.source == "oracle-test" and t.is_oracle
    best = M.pixel_prf(maps, masks, t.value).f1
    for cand in np.unique(maps)[::7]:
        assert M.pixel_prf(maps, masks, cand).f1 <= best + 1e-12
    # image level
    scores = np.array([0.1, 0.2, 0.35, 0.3, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    ti = oracle_best_f1_threshold(scores, labels)
    assert M.image_prf(scores, labels, ti.value).f1 == pytest.approx(max(
        M.image_prf(scores, labels, c).f1 for c in [*scores, -1.0]))
    with pytest.raises(ThresholdError):
        oracle_best_f1_threshold(scores, np.zeros(6, int))


def _brute_region_threshold(maps: np.ndarray, min_area: int) -> float:
    """Reference: scan every distinct value from the bottom and stop at the first that passes."""
    for t in np.unique(maps):
        if all(largest_region(m > t) < min_area for m in maps):
            return float(t)
    raise AssertionError("unreachable: the maximum always passes")


def test_largest_region_counts_8_connected_pixels():
    img = np.zeros((6, 6), bool)
    img[0, 0] = img[1, 1] = img[2, 2] = True  # diagonal: one 8-connected region of 3
    img[5, 5] = True
    assert largest_region(img) == 3
    assert largest_region(np.zeros((4, 4), bool)) == 0


def test_region_threshold_matches_brute_force_and_ignores_speckle():
    rng = np.random.default_rng(0)
    maps = 0.1 * rng.random((3, 24, 24))
    maps[1, 5:9, 5:9] = 0.5 + 0.5 * rng.random((4, 4))  # one 16-pixel blob on a normal image
    for min_area in (1, 4, 10, 17, 30):
        t = threshold_from_normal_regions(maps, min_area=min_area)
        assert t.value == pytest.approx(_brute_region_threshold(maps, min_area))
        assert t.source == f"normal-validation:region-{min_area}px"
        assert not t.is_oracle
        assert all(largest_region(m > t.value) < min_area for m in maps)
    # min_area=1 is the max rule; a blob of 16 must be cut below 17 px, but 17 lets it through
    assert threshold_from_normal_regions(maps, min_area=1).value == pytest.approx(maps.max())
    blob = maps[1, 5:9, 5:9]
    assert threshold_from_normal_regions(maps, min_area=17).value < 0.1 < blob.min()
    assert threshold_from_normal_regions(maps, min_area=16).value >= blob.min()
    # speckle: isolated single bright pixels never block a region rule with min_area >= 2
    speck = np.zeros((2, 16, 16))
    speck[0, ::4, ::4] = 1.0
    assert threshold_from_normal_regions(speck, min_area=2).value < 1.0
    assert threshold_from_normal(speck, method="max").value == 1.0


def test_region_threshold_refuses_masks_and_bad_shapes():
    with pytest.raises(ThresholdError):
        threshold_from_normal_regions(np.zeros((2, 8, 8), bool), min_area=4)
    with pytest.raises(ThresholdError, match="min_area"):
        threshold_from_normal_regions(np.zeros((2, 8, 8)), min_area=0)
    with pytest.raises(ThresholdError, match="N, H, W"):
        threshold_from_normal_regions(np.zeros(8), min_area=2)


def test_region_quantile_ignores_one_unusual_normal_image():
    rng = np.random.default_rng(3)
    maps = 0.1 * rng.random((10, 20, 20))
    maps[7, 2:8, 2:8] = 0.9  # one normal image with a large bright blob
    scores = region_scores(maps, min_area=9)
    assert scores.shape == (10,) and scores.argmax() == 7 and scores[7] >= 0.9
    strict = threshold_from_normal_regions(maps, min_area=9)
    robust = threshold_from_normal_regions(maps, min_area=9, q=0.8)
    assert strict.value == pytest.approx(scores.max())
    assert robust.value == pytest.approx(float(np.quantile(scores, 0.8))) and robust.value < 0.1
    assert robust.source == "normal-validation:region-9px-q0.8"
    with pytest.raises(ThresholdError, match="q must be"):
        threshold_from_normal_regions(maps, min_area=9, q=0)


def test_tail_fit_extrapolates_where_counting_runs_out() -> None:
    from adlib.thresholds import threshold_from_normal_tail

    # exponential values: the true 1 - rate quantile is -log(rate); at rate 1e-4 with 20 000
    # values the empirical quantile rests on two values, the fitted tail on the top 2 000
    values = np.random.default_rng(0).exponential(1.0, 20_000)
    t = threshold_from_normal_tail(values, rate=1e-4)
    assert t.source == "normal-validation:tail-0.0001" and not t.is_oracle
    assert t.value == pytest.approx(-np.log(1e-4), rel=0.1)
    # tiny values fit as well as unit ones (the fit runs on a unit scale)
    assert threshold_from_normal_tail(values * 1e-5, rate=1e-4).value == pytest.approx(t.value * 1e-5, rel=1e-3)
    # too few exceedances: the empirical quantile, labelled as such
    few = threshold_from_normal_tail(values[:100], rate=1e-3)
    assert few.source.endswith("-empirical") and few.value == pytest.approx(np.quantile(values[:100], 0.999))


def test_tail_refuses_masks_and_impossible_rates() -> None:
    from adlib.thresholds import threshold_from_normal_tail

    params = inspect.signature(threshold_from_normal_tail).parameters
    assert params["values"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert not set(params) & {"labels", "masks"}
    with pytest.raises(ThresholdError, match="mask"):
        threshold_from_normal_tail(np.zeros((2, 4, 4), bool))
    values = np.random.default_rng(1).random(1000)
    with pytest.raises(ThresholdError, match="rate must be in"):
        threshold_from_normal_tail(values, rate=0.05, tail_q=0.99)
    with pytest.raises(ThresholdError, match="tail_q must be in"):
        threshold_from_normal_tail(values, rate=0.2)
