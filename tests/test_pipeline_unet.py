"""Tests for the notebook-02 pipeline (UNet autoencoder on DAGM and RSDDs stand-ins)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from adlib import bootstrap as boot
from adlib import experiment, results
from adlib.config import SettingsError
from adlib.data.types import DataError
from adlib.pipelines import unet_dagm_rsdd as P
from adlib.pipelines import unet_rules as rules
from adlib.pipelines import unet_views as views


def test_profiles_complete_and_paper_follows_the_seed() -> None:
    keys = set(P.PROFILES["smoke"])
    for name in ("smoke", "cpu", "paper"):
        assert set(P.PROFILES[name]) == keys, name
        assert P.settings(name) == P.PROFILES[name]  # every profile passes its own checks
    assert P.PROFILES["paper"]["epochs"] == 50  # seed: 50 epochs
    assert tuple(P.PROFILES["paper"]["rsdd_patch"]) == (200, 160)  # seed's patch protocol
    assert P.VARIANTS[0] == "unet-ae" and set(P.VARIANTS) == set(P.PROFILES["cpu"]["variants"])
    assert set(P.PARAMETERS) <= keys


def test_settings_parse_text_and_refuse_typos() -> None:
    cfg = P.settings("smoke", {"datasets": '["dagm"]', "variants": "['unet-ae']", "epochs": "2"})
    assert (cfg["datasets"], cfg["variants"], cfg["epochs"]) == (("dagm",), ("unet-ae",), 2)
    assert P.settings("cpu", {"image_size": 128})["image_size"] == 128
    for overrides, name in [({"epochs": 0}, "EPOCHS"), ({"datasets": ["dagm", "mvtec"]}, "DATASETS"),
                            ({"variants": ["unet"]}, "VARIANTS"), ({"datasets": "dagm"}, "DATASETS"),
                            ({"pixel_quantile": 1.5}, "PIXEL_QUANTILE"), ({"foo": 1}, "FOO"),
                            ({"tune_seg_windows": [0, -5]}, "TUNE_SEG_WINDOWS"),
                            ({"seg_window": 4}, "SEG_WINDOW"), ({"rsdd_stride": 5}, "RSDD_STRIDE")]:
        with pytest.raises(SettingsError, match=name):
            P.settings("smoke", overrides)
    with pytest.raises(SettingsError, match="IMAGE_SIZE"):  # None in the profile: no type to parse to
        P.settings("cpu", {"image_size": "abc"})


def test_random_crop_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 20 * 30, dtype=torch.float32).reshape(2, 1, 20, 30)
    out = P.random_crop_batch(x, 8, gen)
    assert out.shape == (2, 1, 8, 8)
    # every crop is a contiguous window of its own image
    for img, crop in zip(x, out, strict=True):
        y0 = int((crop[0, 0, 0] - img[0, 0, 0]) // 30)
        x0 = int((crop[0, 0, 0] - img[0, 0, 0]) % 30)
        assert torch.equal(img[:, y0:y0 + 8, x0:x0 + 8], crop)
    assert P.random_crop_batch(x, None, gen) is x
    assert P.random_crop_batch(x, 64, gen) is x


def test_residual_contrast() -> None:
    maps = np.ones((2, 4, 4), np.float32)
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    assert rules.residual_contrast(maps, masks) == pytest.approx(1.0)
    maps[0, :2, :2] = 5.0
    assert rules.residual_contrast(maps, masks) == pytest.approx(5.0)
    assert rules.residual_contrast(maps, np.zeros_like(masks)) is None


# --------------------------------------------------------------------------- the protocol


@pytest.fixture(scope="module")
def protocol(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """load -> train -> evaluate -> save for both datasets, in the smoke profile."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("unet")
    cfg = P.settings("smoke")
    run = experiment.run_id(0, cfg)
    out = {}
    for ds in ("dagm", "rsdd"):
        data = P.load(cfg, data_root=None, dataset=ds, seed=0, progress=False)
        tr = P.train(data, cfg, P.VARIANTS[0], results_dir=tmp, run=run, force=True, progress=False)
        evs = P.evaluate(tr, data, cfg, progress=False)
        paths = P.save(evs, tr, data, cfg, results_dir=tmp, profile="smoke", seed=0, run=run)
        out[ds] = {"data": data, "trained": tr, "evals": evs, "paths": paths}
    return {"tmp": tmp, "cfg": cfg, "run": run, **out}


@pytest.mark.parametrize("dataset", ["dagm", "rsdd"])
def test_protocol_writes_guide_results(protocol: dict, dataset: str) -> None:
    r = protocol[dataset]
    data, tr, (ev,), (path,) = r["data"], r["trained"], r["evals"], r["paths"]
    assert data.synthetic and len(data.train) > 0 and len(data.val) > 0
    assert data.test_labels.any() and (data.test_labels == 0).any()
    assert data.test_masks.shape == (len(data.test), *data.test.shape[-2:])
    assert not tr.reused and tr.train_seconds > 0
    assert path == protocol["tmp"] / P.NOTEBOOK / f"unet-ae-{dataset}-{data.category}-{protocol['run']}.json"
    assert tr.checkpoint == experiment.checkpoint_path(
        protocol["tmp"], P.NOTEBOOK, f"unet-ae-{dataset}-{data.category}", protocol["run"])
    assert tr.checkpoint.is_file()
    rec = json.loads(path.read_text())
    assert set(results.RESULT_KEYS) <= set(rec)
    assert rec["synthetic"] is True and rec["profile"] == "smoke" and rec["run_id"] == protocol["run"]
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= rec[key] <= 1.0
    # honest thresholds from validation normals; the rule choice is named in the source
    assert rec["threshold_source"].startswith("normal-validation")
    assert ("chosen on the tuning set" if dataset == "dagm" else "fixed a priori") in rec["threshold_source"]
    params = rec["params"]
    assert params["image_threshold_source"].startswith("normal-validation")
    assert rec["threshold"] == pytest.approx(
        rules.pixel_threshold(ev.val_maps, ev.rule.pixel_quantile).value)
    assert params["rule"] == ev.rule.name() and params["n_test"] == len(data.test)
    for key in ("oracle_image_threshold", "oracle_pixel_threshold", "region_f1", "residual_contrast"):
        assert key in params, key
    # the ORACLE (best F1 on the test set) is never below the honest F1
    assert params["oracle_pixel_f1"] >= rec["pixel_f1"]
    assert params["oracle_image_f1"] >= params["image_f1"]
    # the results keep their 95 % intervals (the rule comparison below computes none)
    assert set(rec["ci95"]) == set(boot.CI_KEYS) and rec["bootstrap"]["n"] == boot.DEFAULT_N_BOOT
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        lo, hi = rec["ci95"][key]
        assert 0.0 <= lo <= hi <= 1.0 and hi > lo, key
    scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
    assert list(scores.columns) == ["path", "label", "defect", "score"] and len(scores) == len(data.test)
    np.testing.assert_allclose(scores["score"], ev.scores)
    if dataset == "dagm":  # the tiny DAGM stand-in has defective Train images: a tuning set
        assert data.tune is not None and not ev.tuning.empty
    else:  # validation patches never come from test strips
        assert all("#y" in p for p in data.test_paths) and ev.tuning.empty


@pytest.mark.parametrize("dataset", ["dagm", "rsdd"])
def test_reuse_reproduces_metrics_and_train_seconds(protocol: dict, dataset: str) -> None:
    r, cfg = protocol[dataset], protocol["cfg"]
    again = P.train(r["data"], cfg, P.VARIANTS[0], results_dir=protocol["tmp"], run=protocol["run"],
                    progress=False)
    assert again.reused and again.train_seconds == r["trained"].train_seconds
    (ev,) = P.evaluate(again, r["data"], cfg, progress=False)
    assert ev.metrics == r["evals"][0].metrics
    assert ev.threshold_params() == r["evals"][0].threshold_params()


def test_key_idea_in_plain_torch(protocol: dict) -> None:
    """The notebook's key-idea cell: residual, dilation, threshold and mask by hand."""
    data, tr, (ev,) = protocol["dagm"]["data"], protocol["dagm"]["trained"], protocol["dagm"]["evals"]
    x = data.test[:3].float() / 255.0
    with torch.no_grad():
        r2 = ((x - tr.model.cpu()(x)) ** 2).mean(dim=1).numpy()
    np.testing.assert_allclose(r2, ev.raw_maps[:3], rtol=1e-5, atol=1e-7)
    for w in (5, 11):  # a w x w max-pool is the grey dilation of seg_map (odd windows)
        pooled = F.max_pool2d(torch.from_numpy(ev.raw_maps)[:, None], w, stride=1, padding=w // 2)
        np.testing.assert_array_equal(pooled[:, 0].numpy(), rules.seg_map(ev.raw_maps, w))
    q = ev.rule.pixel_quantile
    tau = np.quantile(ev.val_maps.astype(np.float64), q) if q < 1 else ev.val_maps.max()
    np.testing.assert_allclose(tau, ev.pixel_threshold.value)
    np.testing.assert_array_equal(ev.predicted(), ev.maps > tau)


def test_two_stage_rule_gates_and_keeps_oracle_above_honest(protocol: dict) -> None:
    data, (ev,) = protocol["dagm"]["data"], protocol["dagm"]["evals"]
    rule = rules.Rule(0.0, 5, 0.999, True)
    two = P.evaluate_rule("unet-ae", rule, ev.raw_maps, ev.val_raw, data, protocol["cfg"],
                          rule_source="(test)")
    seg = rules.seg_map(ev.raw_maps, 5)
    expected = rules.predict_masks(seg, two.pixel_threshold.value, two.scores,
                                   two.image_threshold.value)
    np.testing.assert_array_equal(two.predicted(), expected)
    assert "two-stage" in two.pixel_threshold.source
    assert two.pixel_threshold.source.startswith("normal-validation")
    assert two.oracle_pixel_f1 >= two.metrics["pixel_f1"]


def test_views_tables(protocol: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {(ds, "unet-ae"): (protocol[ds]["trained"], protocol[ds]["evals"][0])
            for ds in ("dagm", "rsdd")}
    summary = views.summary_table(runs)
    assert list(summary["dataset"]) == ["dagm", "rsdd"]
    assert summary.loc[0, "pixel_auroc"] == protocol["dagm"]["evals"][0].metrics["pixel_auroc"]
    comp = views.comparison_table(summary)
    assert list(comp["seed_table1_f1"]) == [0.96, 0.81]  # the seed's Table 1
    calls = []
    real = boot.evaluation_intervals
    monkeypatch.setattr(boot, "evaluation_intervals", lambda **kw: calls.append(kw) or real(**kw))
    table = views.rule_table(runs["dagm", "unet-ae"][1], protocol["dagm"]["data"], protocol["cfg"])
    assert calls == []  # an analysis table: no bootstrap intervals computed (n_boot=0)
    assert len(table) == 6 and table["pixel_f1"].between(0, 1).all()
    chosen = table.iloc[-1]  # the chosen rule, evaluated again: the same numbers as the results
    assert chosen["pixel_f1"] == protocol["dagm"]["evals"][0].metrics["pixel_f1"]


# --------------------------------------------------------------------------- rules


def test_seg_map_dilates_peaks() -> None:
    raw = np.zeros((1, 9, 9), np.float32)
    raw[0, 4, 4] = 1.0
    out = rules.seg_map(raw, 3)
    assert out[0, 3:6, 3:6].min() == 1.0 and out.sum() == 9.0  # the peak keeps its height
    assert rules.seg_map(raw, 0) is raw
    blurred = rules.seg_map(raw, 1, "gauss")
    assert blurred[0, 4, 4] < 1.0 and blurred.sum() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(SettingsError, match="kind"):
        rules.seg_map(raw, 3, "median")


def test_two_stage_gating_matches_prediction() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((4, 6, 6)).astype(np.float32)
    scores = np.array([0.1, 0.9, 0.2, 0.8])
    pred = rules.predict_masks(maps, 0.5, scores, 0.5)
    assert not pred[[0, 2]].any() and pred[1].any()
    gated = rules.gate_maps(maps, 0.5, scores, 0.5)
    np.testing.assert_array_equal(gated > 0.5, pred)
    np.testing.assert_array_equal(rules.predict_masks(maps, 0.5), maps > 0.5)


def test_region_prf_counts_regions() -> None:
    gt = np.zeros((2, 10, 10), bool)
    gt[0, 1:4, 1:4] = True  # found
    gt[0, 6:9, 6:9] = True  # missed
    pred = np.zeros_like(gt)
    pred[0, 2, 2] = True  # touches region 1: correct
    pred[1, 5, 5] = True  # false region in a defect-free image
    r = rules.region_prf(pred, gt)
    assert (r["n_gt_regions"], r["n_pred_regions"]) == (2, 2)
    assert r["region_recall"] == pytest.approx(0.5)
    assert r["region_precision"] == pytest.approx(0.5)
    assert r["region_f1"] == pytest.approx(0.5)
    assert rules.region_prf(np.zeros_like(gt), gt)["region_f1"] == 0.0


def test_choose_rule_uses_tuning_set_or_default() -> None:
    rng = np.random.default_rng(0)
    val = rng.random((3, 16, 16)).astype(np.float32) * 0.1
    tune = rng.random((2, 16, 16)).astype(np.float32) * 0.1
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 6:11, 6:11] = True
    tune[:, 8, 8] = 5.0  # one sharp peak in the middle of each labelled region
    cfg = P.settings("smoke", {"tune_seg_windows": (0, 5), "tune_pixel_quantiles": (0.999,)})
    rule, table, source = rules.choose_rule(val, tune, masks, cfg)
    assert "tuning set" in source and len(table) == 2 + 4
    assert rule.seg_window == 5  # dilating the peak over the region beats the raw peak
    rule, table, source = rules.choose_rule(val, None, None, cfg)
    assert rule == rules.Rule.from_settings(cfg) and table.empty and "a priori" in source


# --------------------------------------------------------------------------- data


def test_dagm_holdout_disjoint_from_train() -> None:
    """Validation normals are held out of Train: no image is in both (compared by pixels)."""
    cfg = P.settings("smoke")
    cfg["max_train"] = None
    data = P.load(cfg, seed=0, progress=False)
    train = {t.numpy().tobytes() for t in data.train}
    assert not any(v.numpy().tobytes() in train for v in data.val)


def _labels(folder: Path) -> dict[str, str]:
    rows = [line.split() for line in (folder / "Label" / "Labels.txt").read_text().splitlines()[1:]]
    return {r[2]: r[1] for r in rows if len(r) >= 3}


@pytest.mark.parametrize("flag", ["0", "1"], ids=["into-train", "into-tuning-set"])
def test_test_image_copied_into_train_is_refused(tmp_path: Path, flag: str) -> None:
    """A Test image copied over a defect-free (or a defective, tuning) Train image is refused."""
    from adlib.data.synthetic import ensure_synthetic

    root = tmp_path / "dagm"
    shutil.copytree(ensure_synthetic("dagm", "Class8", size="tiny", seed=0, progress=False), root)
    train, test = root / "Class8" / "Train", root / "Class8" / "Test"
    target = next(name for name, f in _labels(train).items() if f == flag)
    shutil.copyfile(test / next(iter(_labels(test))), train / target)
    with pytest.raises(DataError, match="same pixels"):
        P.load(P.settings("smoke"), data_root=root, progress=False)


def test_real_dagm_loads_if_present() -> None:
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "dagm"
    if not (root / "Class8").is_dir():
        pytest.skip("real-data dev kit not present")
    data = P.load(P.settings("smoke", {"image_size": 32}), data_root=root, progress=False)
    assert not data.synthetic and data.test_labels.sum() > 0
    assert data.tune is not None and len(data.tune) == len(data.split.extra["train_defective"])
