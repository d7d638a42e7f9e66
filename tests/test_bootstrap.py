"""Bootstrap intervals over test images and the paired bootstrap (adlib.bootstrap)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from adlib import bootstrap, metrics


def _image_data(n: int, seed: int = 0, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3 == 0).astype(int)
    scores = np.round(rng.normal(size=n) + shift * labels, 1)  # rounded: ties must count half
    return scores, labels


def _pixel_data(n: int = 24, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(int)
    masks = np.zeros((n, size, size), bool)
    for i in np.flatnonzero(labels):
        r, c = rng.integers(2, size - 10, 2)
        masks[i, r:r + 6, c:c + 5] = True
        masks[i, r + 7:r + 9, c:c + 2] = True  # a second region in the same image
    maps = (rng.random((n, size, size)) + 0.5 * masks).astype(np.float32)
    return maps, masks, labels


def test_stratified_indices_keep_both_classes_in_their_numbers() -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 0])
    idx = bootstrap.stratified_indices(labels, n_boot=500, seed=3)
    assert idx.shape == (500, 10)
    drawn = labels[idx]
    assert (drawn.sum(axis=1) == 2).all()            # every resample: both defectives' slots are defective
    assert (drawn[:, labels == 0] == 0).all()
    assert set(np.unique(idx[:, labels == 1])) == {7, 8}
    assert np.array_equal(idx, bootstrap.stratified_indices(labels, n_boot=500, seed=3))  # deterministic
    assert not np.array_equal(idx, bootstrap.stratified_indices(labels, n_boot=500, seed=4))
    weights = bootstrap.resample_weights(idx, 10)
    assert (weights.sum(axis=1) == 10).all() and weights[0, idx[0, 0]] >= 1


def test_observed_image_metrics_equal_sklearn_definitions() -> None:
    scores, labels = _image_data(90)
    stats = bootstrap.image_stats(scores, labels, np.ones((1, 90)), threshold=0.4)
    assert stats["image_auroc"][0] == pytest.approx(metrics.image_auroc(scores, labels), abs=1e-12)
    assert stats["image_aupr"][0] == pytest.approx(metrics.image_aupr(scores, labels), abs=1e-12)
    assert stats["image_f1"][0] == pytest.approx(metrics.image_prf(scores, labels, 0.4).f1, abs=1e-12)
    # a resample's weights give the metric of the resampled images (duplicates included)
    idx = bootstrap.stratified_indices(labels, n_boot=3, seed=1)
    weights = bootstrap.resample_weights(idx, 90)
    again = bootstrap.image_stats(scores, labels, weights)
    for b in range(3):
        assert again["image_auroc"][b] == pytest.approx(metrics.image_auroc(scores[idx[b]], labels[idx[b]]))
        assert again["image_aupr"][b] == pytest.approx(metrics.image_aupr(scores[idx[b]], labels[idx[b]]))


def test_image_ci_contains_observed_and_shrinks_with_more_images() -> None:
    small_s, small_y = _image_data(60, seed=2)
    large_s, large_y = _image_data(600, seed=2)
    small = bootstrap.image_ci(small_s, small_y, threshold=0.5)
    large = bootstrap.image_ci(large_s, large_y, threshold=0.5)
    for key, fn in (("image_auroc", metrics.image_auroc), ("image_aupr", metrics.image_aupr)):
        lo, hi = small[key]
        assert lo <= fn(small_s, small_y) <= hi and 0 <= lo < hi <= 1
        assert large[key][1] - large[key][0] < 0.6 * (hi - lo)   # ~ 1/sqrt(10) narrower
    assert small["image_f1"][0] <= metrics.image_prf(small_s, small_y, 0.5).f1 <= small["image_f1"][1]
    assert bootstrap.image_ci(small_s, small_y, seed=5) == bootstrap.image_ci(small_s, small_y, seed=5)
    one_class = bootstrap.image_ci(small_s, np.zeros(60, int))
    assert one_class["image_auroc"] is None and one_class["image_aupr"] is None


def test_image_ci_of_1000_resamples_on_200_images_is_fast() -> None:
    scores, labels = _image_data(200)
    start = time.perf_counter()
    bootstrap.image_ci(scores, labels, threshold=0.5, n_boot=1000)
    assert time.perf_counter() - start < 0.5


def test_pixel_point_estimates_agree_with_metrics_within_grid_tolerance() -> None:
    maps, masks, labels = _pixel_data()
    hist = bootstrap.pixel_histograms(maps, masks, threshold=0.9, n_bins=500)
    point = hist.stats(np.ones((1, len(maps))))
    assert point["pixel_auroc"][0] == pytest.approx(metrics.pixel_auroc(maps, masks), abs=2e-3)
    assert point["aupro"][0] == pytest.approx(metrics.aupro(maps, masks), abs=2e-3)
    exact = metrics.pixel_prf(maps, masks, 0.9)
    assert point["pixel_f1"][0] == pytest.approx(exact.f1, abs=1e-12)      # tp/fp/fn are exact
    assert point["pixel_precision"][0] == pytest.approx(exact.precision, abs=1e-12)
    assert point["pixel_recall"][0] == pytest.approx(exact.recall, abs=1e-12)
    assert hist.regions.sum() == 2 * labels.sum()
    ci = bootstrap.pixel_ci(maps, masks, labels=labels, threshold=0.9)
    for key in ("pixel_auroc", "aupro", "pixel_f1", "pixel_precision", "pixel_recall"):
        lo, hi = ci[key]
        assert lo <= point[key][0] <= hi and lo < hi, key
    # a resample of whole images: its pixel AUROC is that of the images drawn
    idx = bootstrap.stratified_indices(labels, n_boot=1, seed=9)
    row = hist.stats(bootstrap.resample_weights(idx, len(maps)))["pixel_auroc"][0]
    assert row == pytest.approx(metrics.pixel_auroc(maps[idx[0]], masks[idx[0]]), abs=2e-3)


def test_evaluation_intervals_share_resamples_and_describe_them() -> None:
    maps, masks, labels = _pixel_data()
    scores = maps.max(axis=(1, 2))
    ci, meta = bootstrap.evaluation_intervals(scores=scores, labels=labels, image_threshold=1.2, maps=maps,
                                              masks=masks, pixel_threshold=0.9, n_boot=200, seed=1)
    assert set(ci) == set(bootstrap.CI_KEYS)
    assert ci["image_auroc"] == bootstrap.image_ci(scores, labels, threshold=1.2, n_boot=200, seed=1)["image_auroc"]
    assert meta == {"n": 200, "seed": 1, "level": 0.95, "stratified_by": "label", "unit": "test image",
                    "pixel_bins": meta["pixel_bins"]} and meta["pixel_bins"] > 100
    image_only, _ = bootstrap.evaluation_intervals(scores=scores, labels=labels)
    assert set(image_only) == {"image_auroc", "image_aupr"}


def test_paired_bootstrap_identical_and_clearly_better() -> None:
    scores, labels = _image_data(120, seed=4, shift=0.3)
    same = bootstrap.paired_bootstrap(scores, scores.copy(), labels)
    assert same.difference == 0 and same.ci == (0.0, 0.0)
    assert same.p_a_beats_b == 0 and same.p_value == 1
    better = scores + 2.0 * labels  # A separates the classes much better on the same images
    paired = bootstrap.paired_bootstrap(better, scores, labels, n_boot=500)
    assert paired.difference == pytest.approx(metrics.image_auroc(better, labels) - metrics.image_auroc(scores, labels))
    assert paired.ci[0] > 0 and paired.p_a_beats_b > 0.99 and paired.p_value < 0.01
    assert paired.n_boot == 500 and paired.n_images == 120
    reverse = bootstrap.paired_bootstrap(scores, better, labels, n_boot=500, metric="image_aupr")
    assert reverse.ci[1] < 0 and reverse.p_a_beats_b < 0.01
    with pytest.raises(ValueError, match="metric"):
        bootstrap.paired_bootstrap(scores, scores, labels, metric="pixel_auroc")


def test_paired_from_scores_aligns_on_path_and_refuses_misaligned_frames() -> None:
    a = pd.DataFrame({"path": ["x.png", "y.png", "z.png"], "label": [0, 1, 1], "score": [0.1, 0.9, 0.5]})
    b = pd.DataFrame({"path": ["z.png", "x.png", "y.png"], "label": [1, 0, 1], "score": [5.0, 1.0, 9.0]})
    sa, sb, y = bootstrap.paired_from_scores(a, b)
    assert sb.tolist() == [1.0, 9.0, 5.0] and y.tolist() == [0, 1, 1] and sa.tolist() == [0.1, 0.9, 0.5]
    other = b.assign(path=["z.png", "x.png", "w.png"])
    with pytest.raises(ValueError, match="patch-pca and variation-model did not score the same test images"):
        bootstrap.paired_from_scores(a, other, name_a="patch-pca", name_b="variation-model")
    flipped = b.assign(label=[1, 1, 1])
    with pytest.raises(ValueError, match="disagree on the label.*x.png"):
        bootstrap.paired_from_scores(a, flipped)
    with pytest.raises(ValueError, match="twice"):
        bootstrap.paired_from_scores(pd.concat([a, a.iloc[:1]]), b)


def test_check_intervals_refuses_bad_entries() -> None:
    meta = {"n": 1000, "seed": 0, "level": 0.95, "stratified_by": "label", "unit": "test image"}
    ci, _ = bootstrap.check_intervals({"image_auroc": (0.8, 0.9), "aupro": None}, meta)
    assert ci == {"image_auroc": [0.8, 0.9], "aupro": None}
    for bad, message in (({"image_auroc": [0.9, 0.8]}, "lo > hi"), ({"image_auroc": [0.8, 91.0]}, r"\[0, 1\]"),
                         ({"image_roc": [0.1, 0.2]}, "image_roc"), ({"image_auroc": [0.1]}, "two numbers")):
        with pytest.raises(ValueError, match=message):
            bootstrap.check_intervals(bad, meta)
    with pytest.raises(ValueError, match="level"):
        bootstrap.check_intervals({}, {**meta, "level": 0.9})


def test_experiment_evaluate_and_save_store_the_intervals(tmp_path) -> None:
    import json
    from pathlib import Path

    from adlib import experiment, thresholds
    from adlib.data.types import Split

    maps, masks, labels = _pixel_data()
    rng = np.random.default_rng(1)
    val = rng.random((6, 32, 32)).astype(np.float32)
    kw = dict(scores=maps.max(axis=(1, 2)), labels=labels, defects=["cut" if v else "good" for v in labels],
              paths=[f"test/{i}.png" for i in range(len(labels))], val_scores=val.max(axis=(1, 2)),
              maps=maps, masks=masks, val_maps=val)
    ev = experiment.evaluate("m", n_boot=300, **kw)
    assert set(ev.ci95) == set(bootstrap.CI_KEYS) and ev.bootstrap["n"] == 300
    lo, hi = ev.ci95["pixel_f1"]
    assert lo <= ev.metrics["pixel_f1"] <= hi
    assert experiment.evaluate("m", n_boot=0, **kw).ci95 == {}
    # a pipeline that replaces the image threshold after evaluate(): image F1's interval follows it
    ev.image_threshold = thresholds.Threshold(0.0, "normal-validation:fixed-for-test")
    split = Split(dataset="mvtec", category="x", root=Path("."), train=[], test=[], has_masks=True, channels=1)
    path = experiment.save(ev, results_dir=tmp_path, notebook="nb", split=split, synthetic=True,
                           profile="smoke", seed=0, run="s0-abcdef", train_seconds=1.0, params={})
    raw = json.loads(path.read_text())
    assert raw["bootstrap"]["stratified_by"] == "label" and raw["bootstrap"]["unit"] == "test image"
    f1_all_defective = 2 * labels.sum() / (labels.sum() + len(labels))  # every image predicted defective
    assert raw["ci95"]["image_f1"] == [pytest.approx(f1_all_defective)] * 2
    assert raw["ci95"]["image_auroc"] == list(ev.ci95["image_auroc"])
