"""Tests for adlib.results (GUIDE section 2 files) and adlib.published."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

import adlib
from adlib import published, results
from adlib.results import ResultsError
from adlib.thresholds import threshold_from_normal


def _data(seed=0):
    rng = np.random.default_rng(seed)
    n = 8
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    defects = ["good", "good", "good", "crack", "cut", "crack", "cut", "good"]
    masks = np.zeros((n, 16, 16), bool)
    masks[labels == 1, 4:9, 5:10] = True
    maps = (rng.random((n, 16, 16)) * 0.5 + 0.4 * masks).astype(np.float32)
    scores = maps.reshape(n, -1).max(axis=1)
    df = pd.DataFrame({"path": [f"test/{d}/{i:03d}.png" for i, d in enumerate(defects)],
                       "label": labels, "defect": defects, "score": scores})
    normal_val = (rng.random((4, 16, 16)) * 0.5).astype(np.float32)
    return maps, masks, labels, defects, df, normal_val


def _save(tmp_path, **over):
    maps, masks, labels, defects, df, normal_val = _data()
    thr = threshold_from_normal(normal_val, method="max")
    summary = results.metrics_summary(scores=df["score"], labels=labels, maps=maps, masks=masks,
                                      threshold=thr, defects=defects)
    kwargs = dict(notebook="01_hazelnut_autoencoder", method="conv-ae-l2", dataset="mvtec",
                  category="hazelnut", synthetic=True, profile="smoke", seed=0, metrics=summary,
                  scores=df, threshold=thr, train_seconds=1.5,
                  params={"epochs": np.int64(2), "image_size": 16, "lr": np.float32(0.001)},
                  run_id="s0-3f9a1c")
    kwargs.update(over)
    return results.save_results(tmp_path, **kwargs)


def test_round_trip_and_layout(tmp_path):
    path = _save(tmp_path)
    assert path == tmp_path / "01_hazelnut_autoencoder" / "conv-ae-l2-mvtec-hazelnut-s0-3f9a1c.json"
    raw = json.loads(path.read_text())
    assert list(raw) == list(results.RESULT_KEYS)
    assert raw["run_id"] == "s0-3f9a1c" and raw["adlib_version"].startswith(adlib.__version__)
    assert datetime.fromisoformat(raw["created"].replace("Z", "+00:00")).tzinfo is not None
    assert raw["threshold_source"] == "normal-validation:max"
    assert raw["params"] == {"epochs": 2, "image_size": 16, "lr": pytest.approx(0.001)}
    assert sorted(raw["per_defect"]) == ["crack", "cut"]
    for key in results.METRIC_KEYS:
        assert raw[key] is None or 0 <= raw[key] <= 1
    assert results.load_results(path) == raw
    csv = path.with_name("conv-ae-l2-mvtec-hazelnut-s0-3f9a1c.scores.csv")
    scores = results.load_scores(csv)
    assert list(scores.columns) == ["path", "label", "defect", "score"] and len(scores) == 8
    again = results.image_metrics_from_scores(csv)
    assert again["image_auroc"] == pytest.approx(raw["image_auroc"])
    assert again["image_aupr"] == pytest.approx(raw["image_aupr"])
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_nan_becomes_null_and_no_masks_gives_none(tmp_path):
    _, _, labels, _, df, _ = _data()
    summary = results.metrics_summary(scores=df["score"], labels=labels)
    assert summary["pixel_auroc"] is None and summary["aupro"] is None and summary["pixel_f1"] is None
    summary["pixel_auroc"] = float("nan")
    path = _save(tmp_path, metrics=summary, threshold=None, dataset="dagm", category="Class8")
    raw = json.loads(path.read_text())
    assert raw["pixel_auroc"] is None and raw["threshold"] is None and raw["per_defect"] == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("aupro"), "lacks"),
        (lambda m: m.update(image_roc=0.5), "unknown"),
        (lambda m: m.update(pixel_auroc=1.2), "outside"),
        (lambda m: m.update(aupro=61.0), "percentage"),
        (lambda m: m.update(aupro="0.6"), "number"),
    ],
)
def test_metric_validation(tmp_path, change, message):
    maps, masks, labels, defects, df, normal_val = _data()
    summary = results.metrics_summary(scores=df["score"], labels=labels, maps=maps, masks=masks)
    change(summary)
    with pytest.raises(ResultsError, match=message):
        _save(tmp_path, metrics=summary, threshold=None)
    assert not any(tmp_path.rglob("*")), "nothing may be written when validation fails"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"profile": "fast"}, "profile"),
        ({"seed": 1.5}, "seed"),
        ({"synthetic": "yes"}, "synthetic"),
        ({"method": "conv ae/l2"}, "method"),
        ({"threshold": 0.3, "threshold_source": "best-on-test"}, "oracle-test"),
        ({"train_seconds": -1}, "train_seconds"),
        ({"params": {"model": object()}}, "JSON"),
        ({"run_id": "seed0"}, "run_id"),
        ({"run_id": "s1-3f9a1c"}, "does not match seed 0"),
        ({"created": "yesterday"}, "ISO 8601"),
    ],
)
def test_field_validation(tmp_path, over, message):
    with pytest.raises(ResultsError, match=message):
        _save(tmp_path, **over)


def test_scores_validation(tmp_path):
    _, _, _, _, df, _ = _data()
    with pytest.raises(ResultsError, match="columns"):
        _save(tmp_path, scores=df.drop(columns="defect"))
    bad = df.copy()
    bad.loc[0, "label"] = 2
    with pytest.raises(ResultsError, match="label"):
        _save(tmp_path, scores=bad)
    bad = df.copy()
    bad.loc[0, "defect"] = "crack"
    with pytest.raises(ResultsError, match="good"):
        _save(tmp_path, scores=bad)
    bad = df.copy()
    bad["score"] = -bad["score"]  # not the scores the AUROC came from
    with pytest.raises(ResultsError, match="image_auroc"):
        _save(tmp_path, scores=bad)


def test_load_rejects_edited_file(tmp_path):
    path = _save(tmp_path)
    raw = json.loads(path.read_text())
    raw["image_auroc"] = 91.0
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match=str(path.name)):
        results.load_results(path)


def test_collect_and_table(tmp_path):
    _save(tmp_path)
    _save(tmp_path, method="conv-ae-ssim")
    _save(tmp_path, notebook="02_dagm", dataset="dagm", category="Class8")
    df = results.collect_results(tmp_path)
    assert len(df) == 3 and set(results.METRIC_KEYS) <= set(df.columns)
    table = results.results_table(df, dataset="mvtec")
    assert list(table["method"]) == ["conv-ae-l2", "conv-ae-ssim"]
    assert table["image_auroc"].between(0, 1).all()
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(ResultsError):
        results.collect_results(tmp_path)
    with pytest.warns(UserWarning):
        assert len(results.collect_results(tmp_path, errors="skip")) == 3


def test_published_numbers_are_fractions_with_sources():
    df = published.published_table()
    assert len(df) > 0 and df["value"].between(0, 1).all()
    assert df["source"].str.len().gt(0).all() and set(df["seed"]) == {"000", "001", "002", "003", "PatchCore"}
    s1 = published.published_table(seed="001", dataset="mvtec")
    assert len(s1) == 8 and set(s1["category"]) == {"bottle", "carpet"}
    s3 = published.published_table(seed=3)
    assert len(s3) == 36 and set(s3["metric"]) == {"patch_auroc", "patch_precision", "patch_recall", "patch_f1"}
    assert all(isinstance(v, float) and not math.isnan(v) for v in df["value"])


def test_runs_that_differ_in_seed_or_settings_never_overwrite(tmp_path):
    from adlib.experiment import run_id

    cfg = {"epochs": 1, "image_size": 16}
    ids = {run_id(0, cfg), run_id(1, cfg), run_id(0, {**cfg, "epochs": 2}), run_id(0, cfg, data_root="/x")}
    assert len(ids) == 4 and run_id(0, cfg) == run_id(0, dict(reversed(list(cfg.items()))))
    assert run_id(0, cfg).split("-")[1] == run_id(1, cfg).split("-")[1]  # settings hash without the seed
    paths = {_save(tmp_path, seed=int(r[1]), run_id=r) for r in sorted(ids)}
    assert len(paths) == 4 and all(p.is_file() for p in paths)


def test_files_written_before_run_ids_still_load(tmp_path):
    path = _save(tmp_path)
    raw = json.loads(path.read_text())
    for key in results.RUN_KEYS:
        raw.pop(key)
    old = path.with_name("conv-ae-l2-mvtec-hazelnut.json")
    old.write_text(json.dumps(raw))
    path.with_name(path.stem + ".scores.csv").rename(old.with_name(old.stem + ".scores.csv"))
    path.unlink()
    rec = results.load_results(old)
    assert rec["run_id"] is None and rec["created"] is None and rec["adlib_version"] is None


def _intervals():
    from adlib import bootstrap

    maps, masks, labels, _, df, normal_val = _data()
    thr = threshold_from_normal(normal_val, method="max")
    return bootstrap.evaluation_intervals(scores=df["score"], labels=labels, maps=maps, masks=masks,
                                          pixel_threshold=thr.value, n_boot=200)


def test_bootstrap_intervals_round_trip_and_flatten(tmp_path):
    ci, meta = _intervals()
    path = _save(tmp_path, ci95=ci, bootstrap=meta)
    raw = json.loads(path.read_text())
    assert list(raw)[-2:] == ["ci95", "bootstrap"] and raw["bootstrap"]["n"] == 200
    assert raw["ci95"]["pixel_auroc"] == list(ci["pixel_auroc"])
    assert raw["ci95"]["pixel_auroc"][0] <= raw["pixel_auroc"] + 2e-3  # the grid's tolerance
    assert results.load_results(path) == raw
    _save(tmp_path, method="conv-ae-ssim")  # a file without intervals in the same folder
    df = results.collect_results(tmp_path).set_index("method")
    assert set(results.CI_COLUMNS) <= set(df.columns) and "ci95" not in df.columns
    assert df.loc["conv-ae-l2", "image_auroc_lo"] == ci["image_auroc"][0]
    assert df.loc["conv-ae-l2", "aupro_hi"] == ci["aupro"][1]
    assert np.isnan(df.loc["conv-ae-ssim", "image_auroc_lo"])


@pytest.mark.parametrize(
    ("ci", "meta", "message"),
    [
        ({"image_auroc": [0.9, 0.7]}, "ok", "lo > hi"),
        ({"image_auroc": [0.7, 90.0]}, "ok", r"\[0, 1\]"),
        ({"roc": [0.1, 0.2]}, "ok", "roc"),
        ({"image_auroc": [0.7, 0.9]}, None, "come together"),
        ({"image_auroc": [0.7, 0.9]}, {"n": 0, "level": 0.95}, "bootstrap.n"),
    ],
)
def test_bootstrap_intervals_are_validated(tmp_path, ci, meta, message):
    meta = {"n": 10, "seed": 0, "level": 0.95, "stratified_by": "label", "unit": "test image"} if meta == "ok" else meta
    with pytest.raises(ResultsError, match=message):
        _save(tmp_path, ci95=ci, bootstrap=meta)
    assert not any(tmp_path.rglob("*.json"))
