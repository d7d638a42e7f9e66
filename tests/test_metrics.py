"""Tests for adlib.metrics: known values, agreement with sklearn and a brute-force AUPRO."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from adlib import metrics as M


def _random_case(seed: int, n: int = 4, h: int = 12, w: int = 12, levels: int | None = None):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for i in range(n - 1):  # last image defect-free
        for _ in range(rng.integers(1, 3)):
            r, c = rng.integers(0, h - 3), rng.integers(0, w - 3)
            masks[i, r : r + rng.integers(1, 4), c : c + rng.integers(1, 4)] = True
    maps = rng.random((n, h, w)).astype(np.float32) + 0.6 * masks
    if levels:  # force ties
        maps = np.round(maps * levels) / levels
    return maps.astype(np.float32), masks


def _brute_aupro(maps, masks, limit=0.3):
    """Reference: threshold at every distinct value, PRO from explicit region overlaps."""
    regions = []
    for i in range(len(masks)):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = ~masks
    ts = np.concatenate([[np.inf], np.unique(maps)[::-1], [-np.inf]])
    fprs, pros = [], []
    for t in ts:
        pred = maps > t
        fprs.append((pred & normal).sum() / normal.sum())
        pros.append(np.mean([pred[i][r].mean() for i, r in regions]))
    area = 0.0
    for x0, x1, y0, y1 in zip(fprs[:-1], fprs[1:], pros[:-1], pros[1:], strict=True):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_at = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_at) / 2
            break
    return area / limit


def test_image_auroc_perfect_constant_inverted():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert M.image_auroc(scores, labels) == pytest.approx(1.0)
    assert M.image_auroc(np.ones(5), labels) == pytest.approx(0.5)
    assert M.image_auroc(-scores, labels) == pytest.approx(0.0)
    assert M.image_aupr(scores, labels) == pytest.approx(1.0)


def test_image_metrics_edge_cases_and_errors():
    assert M.image_auroc([0.1, 0.2], [0, 0]) is None
    assert M.image_aupr([0.1, 0.2], [1, 1]) is None
    with pytest.raises(M.MetricError, match="labels must be 0"):
        M.image_auroc([0, 1, 0], [0.3, 0.9, 0.1])  # arguments swapped
    with pytest.raises(M.MetricError, match="NaN"):
        M.image_auroc([np.nan, 1.0], [0, 1])


def test_image_prf_matches_sklearn():
    rng = np.random.default_rng(1)
    scores, labels = rng.random(50), rng.integers(0, 2, 50)
    r = M.image_prf(scores, labels, 0.5)
    p, rc, f, _ = precision_recall_fscore_support(labels, scores > 0.5, average="binary")
    assert (r.precision, r.recall, r.f1) == pytest.approx((p, rc, f))
    assert r.tp + r.fn == labels.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_auroc_matches_sklearn(seed):
    maps, masks = _random_case(seed, levels=20 if seed == 2 else None)
    ref = roc_auc_score(masks.ravel(), maps.ravel())
    assert M.pixel_auroc(maps, masks, exact=True) == pytest.approx(ref, abs=1e-12)
    assert M.pixel_auroc(maps, masks, exact=False, n_bins=200) == pytest.approx(ref, abs=1e-3)


def test_pixel_auroc_binned_on_larger_data():
    maps, masks = _random_case(3, n=20, h=64, w=64)
    ref = roc_auc_score(masks.ravel(), maps.ravel())
    assert M.pixel_auroc(maps, masks, exact=False) == pytest.approx(ref, abs=1e-3)


def test_pixel_metrics_no_defect_is_none():
    maps = np.random.default_rng(0).random((2, 8, 8))
    masks = np.zeros((2, 8, 8), bool)
    assert M.pixel_auroc(maps, masks) is None
    assert M.aupro(maps, masks) is None
    r = M.pixel_prf(maps, masks, 0.5)
    assert r.recall is None and r.f1 == 0.0  # only false positives
    assert M.pixel_prf(maps, masks, 2.0).f1 is None  # nothing positive anywhere


@pytest.mark.parametrize("seed", range(6))
def test_aupro_matches_brute_force(seed):
    maps, masks = _random_case(seed, levels=15 if seed % 2 else None)
    ref = _brute_aupro(maps, masks)
    assert M.aupro(maps, masks, exact=True) == pytest.approx(ref, abs=1e-9)
    assert M.aupro(maps, masks, exact=False, n_bins=300) == pytest.approx(ref, abs=5e-3)
    assert M.aupro(maps, masks, fpr_limit=1.0, exact=True) == pytest.approx(
        _brute_aupro(maps, masks, 1.0), abs=1e-9)


def test_aupro_perfect_and_range():
    maps, masks = _random_case(7)
    perfect = masks.astype(np.float32)
    assert M.aupro(perfect, masks) == pytest.approx(1.0)
    assert M.pixel_auroc(perfect, masks) == pytest.approx(1.0)
    assert M.aupro(-perfect, masks) == pytest.approx(0.0)
    v = M.aupro(maps, masks)
    assert 0.0 <= v <= 1.0


def test_aupro_weights_regions_equally():
    # one big region fully found, one small region missed: PRO = 0.5, not the pixel recall
    masks = np.zeros((1, 10, 10), bool)
    masks[0, :4, :4] = True  # 16 px
    masks[0, 8, 8] = True  # 1 px, not touching
    maps = np.full((1, 10, 10), 0.5, np.float32)  # normal pixels
    maps[0, :4, :4] = 1.0  # big region: found first
    maps[0, 8, 8] = 0.0  # small region: found only after every normal pixel
    v = M.aupro(maps, masks, exact=True)
    assert v == pytest.approx(_brute_aupro(maps, masks))
    assert v == pytest.approx(0.5)  # PRO is 0.5 for all FPR in [0, 1)
    assert M.pixel_prf(maps, masks, 0.7).recall == pytest.approx(16 / 17)


def test_pixel_prf_and_curve_match_sklearn():
    maps, masks = _random_case(4)
    for t in (0.3, 0.7, 1.2):
        r = M.pixel_prf(maps, masks, t)
        p, rc, f, _ = precision_recall_fscore_support(masks.ravel(), maps.ravel() > t,
                                                      average="binary", zero_division=0)
        assert (r.precision, r.recall, r.f1) == pytest.approx((p, rc, f))
    ts = [0.9, 0.1, 0.5]
    curve = M.prf_curve(maps, masks, ts)
    assert list(curve["threshold"]) == ts
    for _, row in curve.iterrows():
        r = M.pixel_prf(maps, masks, row["threshold"])
        assert (row["tp"], row["fp"], row["fn"]) == (r.tp, r.fp, r.fn)
        assert row["f1"] == pytest.approx(r.f1)


def test_per_defect_prf():
    maps, masks = _random_case(5)
    defects = ["crack", "cut", "crack", "good"]
    out = M.per_defect_prf(maps, masks, defects, 0.6)
    assert sorted(out) == ["crack", "cut"]
    sel = [0, 2]
    ref = M.pixel_prf(maps[sel], masks[sel], 0.6)
    assert out["crack"] == {"pixel_f1": ref.f1, "pixel_precision": ref.precision,
                            "pixel_recall": ref.recall}
    with pytest.raises(M.MetricError):
        M.per_defect_prf(maps, masks, defects[:2], 0.6)


def test_shape_mismatch_is_clear():
    with pytest.raises(M.MetricError, match="same"):
        M.pixel_auroc(np.zeros((2, 8, 8)), np.zeros((2, 4, 4), bool))


def test_pixel_metrics_memory_300_maps_256():
    rng = np.random.default_rng(0)
    maps = rng.random((300, 256, 256), dtype=np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[::3, 100:140, 60:90] = True
    maps[masks] += 0.3
    tracemalloc.start()
    try:
        auroc = M.pixel_auroc(maps, masks)
        pro = M.aupro(maps, masks)
        prf = M.pixel_prf(maps, masks, 0.9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300e6, f"peak {peak / 1e6:.0f} MB"  # inputs (~100 MB) are not counted
    assert 0.5 < auroc < 1 and 0 < pro < 1 and prf.f1 is not None
    # spot check against sklearn on a slice
    sl = slice(0, 30)
    ref = roc_auc_score(masks[sl].ravel(), maps[sl].ravel())
    assert M.pixel_auroc(maps[sl], masks[sl], exact=False) == pytest.approx(ref, abs=1e-3)
