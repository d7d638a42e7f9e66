"""Tests for the notebook-02 pipeline (UNet autoencoder on DAGM and RSDDs stand-ins)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlib.config import pick
from adlib.pipelines import unet_dagm_rsdd as P

GUIDE_KEYS = {
    "notebook", "method", "dataset", "category", "synthetic", "profile", "seed", "image_auroc",
    "image_aupr", "pixel_auroc", "aupro", "pixel_f1", "pixel_precision", "pixel_recall",
    "threshold", "threshold_source", "per_defect", "train_seconds", "params",
}


@pytest.fixture(scope="module")
def smoke() -> dict:
    return pick("smoke", P.PROFILES, {})


def test_profiles_complete_and_paper_follows_the_seed() -> None:
    keys = set(P.PROFILES["smoke"])
    for name in ("smoke", "cpu", "paper"):
        assert set(P.PROFILES[name]) == keys, name
    assert P.PROFILES["paper"]["epochs"] == 50  # seed: 50 epochs
    assert tuple(P.PROFILES["paper"]["rsdd_patch"]) == (200, 160)  # seed's patch protocol
    assert P.PROFILES["cpu"]["variants"][0] == "unet-ae"


def test_check_params_rejects_typos() -> None:
    assert P.check_params("dagm", ["unet-ae"]) == (["dagm"], ["unet-ae"])
    with pytest.raises(P.PipelineError, match="DATASETS"):
        P.check_params(["dagm", "mvtec"], ["unet-ae"])
    with pytest.raises(P.PipelineError, match="VARIANTS"):
        P.check_params(["dagm"], ["unet"])


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
    assert P.residual_contrast(maps, masks) == pytest.approx(1.0)
    maps[0, :2, :2] = 5.0
    assert P.residual_contrast(maps, masks) == pytest.approx(5.0)
    assert P.residual_contrast(maps, np.zeros_like(masks)) is None


@pytest.mark.parametrize("dataset", ["dagm", "rsdd"])
def test_smoke_run_writes_results(dataset: str, smoke: dict, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = P.load_data(dataset, None, "Class8", smoke, seed=0, progress=False)
    assert data.synthetic and len(data.train) > 0 and len(data.val) > 0
    assert data.test_labels.any() and (data.test_labels == 0).any()
    assert data.test_masks.shape == (len(data.test), *data.test.shape[-2:])
    if dataset == "rsdd":  # validation patches never come from test strips
        assert all("#y" in p for p in data.test_paths)
    _, history, ev, path = P.run_variant(
        "unet-ae", data, smoke, device=torch.device("cpu"), results_dir=tmp_path,
        profile="smoke", force_train=True, progress=False)
    assert history.trained
    assert path == tmp_path / P.NOTEBOOK / f"unet-ae-{dataset}-{data.category}.json"
    rec = json.loads(path.read_text())
    assert set(rec) == GUIDE_KEYS
    assert rec["synthetic"] is True and rec["profile"] == "smoke"
    assert rec["threshold_source"].startswith("normal-validation")
    assert rec["params"]["image_threshold_source"].startswith("normal-validation")
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= rec[key] <= 1.0
    scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
    assert list(scores.columns) == ["path", "label", "defect", "score"]
    assert len(scores) == len(data.test)
    assert np.allclose(scores["score"], ev.scores)
    # the pixel threshold comes from the validation-normal maps with the chosen rule's quantile
    assert rec["threshold"] == pytest.approx(
        float(P.pixel_threshold(ev.val_maps, ev.rule.pixel_quantile)))
    params = rec["params"]
    for key in ("image_threshold", "image_threshold_source", "oracle_image_threshold",
                "oracle_image_f1", "oracle_pixel_threshold", "oracle_pixel_f1", "region_f1",
                "rule", "rule_source"):
        assert key in params, key
    if dataset == "dagm":  # the tiny DAGM stand-in has defective Train images: a tuning set
        assert data.tune is not None and params["rule_source"].startswith("tuning set")
        assert not ev.tuning.empty
    else:
        assert params["rule_source"].startswith("a-priori")
    assert (P.checkpoint_path(tmp_path, "unet-ae", data)).is_file()
    table = P.rule_table(ev, data, smoke)
    assert len(table) == 6 and table["pixel_f1"].between(0, 1).all()


def test_seg_map_dilates_peaks() -> None:
    raw = np.zeros((1, 9, 9), np.float32)
    raw[0, 4, 4] = 1.0
    out = P.seg_map(raw, 3)
    assert out[0, 3:6, 3:6].min() == 1.0 and out.sum() == 9.0  # the peak keeps its height
    assert P.seg_map(raw, 0) is raw
    blurred = P.seg_map(raw, 1, "gauss")
    assert blurred[0, 4, 4] < 1.0 and blurred.sum() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(P.PipelineError, match="kind"):
        P.seg_map(raw, 3, "median")


def test_two_stage_gating_matches_prediction() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((4, 6, 6)).astype(np.float32)
    scores = np.array([0.1, 0.9, 0.2, 0.8])
    pred = P.predict_masks(maps, 0.5, scores, 0.5)
    assert not pred[[0, 2]].any() and pred[1].any()
    gated = P.gate_maps(maps, 0.5, scores, 0.5)
    assert np.array_equal(gated > 0.5, pred)
    assert np.array_equal(P.predict_masks(maps, 0.5), maps > 0.5)


def test_region_prf_counts_regions() -> None:
    gt = np.zeros((2, 10, 10), bool)
    gt[0, 1:4, 1:4] = True  # found
    gt[0, 6:9, 6:9] = True  # missed
    pred = np.zeros_like(gt)
    pred[0, 2, 2] = True  # touches region 1: correct
    pred[1, 5, 5] = True  # false region in a defect-free image
    r = P.region_prf(pred, gt)
    assert (r["n_gt_regions"], r["n_pred_regions"]) == (2, 2)
    assert r["region_recall"] == pytest.approx(0.5)
    assert r["region_precision"] == pytest.approx(0.5)
    assert r["region_f1"] == pytest.approx(0.5)
    assert P.region_prf(np.zeros_like(gt), gt)["region_f1"] == 0.0


def test_choose_rule_uses_tuning_set_or_default(smoke: dict) -> None:
    rng = np.random.default_rng(0)
    val = rng.random((3, 16, 16)).astype(np.float32) * 0.1
    tune = rng.random((2, 16, 16)).astype(np.float32) * 0.1
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 6:11, 6:11] = True
    tune[:, 8, 8] = 5.0  # one sharp peak in the middle of each labelled region
    settings = {**smoke, "tune_seg_sizes": (0, 5), "tune_pixel_quantiles": (0.999,)}
    rule, table, source = P.choose_rule(val, tune, masks, settings)
    assert source.startswith("tuning set") and len(table) == 2 + 4
    assert rule.seg_size == 5  # dilating the peak over the region beats the raw peak
    rule, table, source = P.choose_rule(val, None, None, settings)
    assert rule == P.Rule.from_settings(settings) and table.empty and source.startswith("a-priori")


def test_dagm_holdout_disjoint_from_train(smoke: dict) -> None:
    """Validation normals are held out of Train: no image is in both (compared by pixels)."""
    data = P.load_data("dagm", None, "Class8", {**smoke, "max_train": None}, seed=0,
                       progress=False)
    train = {bytes(t.numpy().tobytes()) for t in data.train}
    assert not any(bytes(v.numpy().tobytes()) in train for v in data.val)


def test_real_dagm_loads_if_present() -> None:
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "dagm"
    if not (root / "Class8").is_dir():
        pytest.skip("real-data dev kit not present")
    settings = {**P.PROFILES["smoke"], "image_size": 32}
    data = P.load_data("dagm", root, "Class8", settings, progress=False)
    assert not data.synthetic and data.test_labels.sum() > 0
