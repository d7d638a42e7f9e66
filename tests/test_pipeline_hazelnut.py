"""Tests for the notebook-01 pipeline (seed 000 autoencoder) on tiny synthetic data."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlib import metrics as MET
from adlib.data.types import DataError
from adlib.maps import image_scores
from adlib.pipelines import hazelnut_ae as P
from adlib.results import RESULT_KEYS
from adlib.thresholds import largest_region, region_scores, threshold_from_normal_regions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_hazelnut_autoencoder.ipynb"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adlib.data.synthetic import ensure_synthetic

    return ensure_synthetic("mvtec", "hazelnut", size="tiny", seed=0,
                            root=tmp_path_factory.mktemp("synthetic"), progress=False)


@pytest.fixture(scope="module")
def cfg() -> dict:
    return dict(P.PROFILES["smoke"], image_size=32)


@pytest.fixture(scope="module")
def data(tiny_root: Path, cfg: dict) -> P.Data:
    return P.load_data(tiny_root, "hazelnut", cfg, seed=0, progress=False)


@pytest.fixture(scope="module")
def trained(data: P.Data, cfg: dict, tmp_path_factory: pytest.TempPathFactory) -> P.Trained:
    torch.set_num_threads(1)
    return P.train_variant(data, cfg, "l2", results_dir=tmp_path_factory.mktemp("res"),
                           force_train=True, progress=False)


def test_profiles_share_keys_and_paper_matches_seed() -> None:
    keys = {k: set(v) for k, v in P.PROFILES.items()}
    assert keys["smoke"] == keys["cpu"] == keys["paper"]
    paper = P.PROFILES["paper"]
    assert (paper["epochs"], paper["image_size"], paper["latent_dim"]) == (1000, 256, 500)
    assert paper["augment_factor"] == 5
    assert len(P.PROFILES["smoke"]["latent_sizes"]) == 2 and P.PROFILES["smoke"]["latent_epochs"] == 1


def test_validation_holdout_is_defect_free_and_disjoint(data: P.Data) -> None:
    train = {s.path for s in data.train.samples}
    val = {s.path for s in data.val.samples}
    test = {s.path for s in data.test.samples}
    assert val and train and not (train & val) and not (val & test)
    assert all(s.label == 0 for s in data.val.samples)
    assert data.augment_factor == 2
    assert len(P.Repeated(data.train, 2)) == 2 * len(data.train)


def test_training_logs_losses_and_monitor(trained: P.Trained) -> None:
    hist = trained.history
    assert hist.steps and "loss" in hist.steps[0]
    epoch = hist.epochs[-1]
    assert "val_loss" in epoch
    assert any(k.startswith("monitor_f1_") for k in epoch)
    assert trained.checkpoint.exists()


def test_evaluate_and_save_results(trained: P.Trained, data: P.Data, cfg: dict, tmp_path: Path) -> None:
    ev = P.evaluate(trained, data, cfg)
    assert ev.maps.shape == (len(data.test), 32, 32)
    assert ev.threshold.source.startswith("normal-validation")
    assert ev.oracle is not None and ev.oracle.is_oracle
    assert set(ev.metrics["per_defect"]) == {"crack", "cut", "hole", "print"}
    path = P.save(ev, trained, data, cfg, results_dir=tmp_path, profile="smoke", seed=0)
    rec = json.loads(path.read_text())
    assert list(rec) == list(RESULT_KEYS)
    assert rec["method"] == "conv-ae-l2" and rec["synthetic"] is False
    assert rec["threshold_source"].startswith("normal-validation")
    scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
    assert list(scores.columns) == ["path", "label", "defect", "score"]
    assert len(scores) == len(data.test)
    params = rec["params"]
    for key in ("image_threshold", "image_threshold_source", "oracle_image_threshold", "oracle_image_f1",
                "oracle_pixel_threshold", "oracle_pixel_f1"):
        assert key in params, key
    assert params["image_threshold_source"] == "normal-validation:quantile-0.95"
    val_scores = image_scores(ev.val_maps, cfg["score"])
    assert params["image_threshold"] == pytest.approx(float(np.quantile(val_scores, 0.95)))
    assert params["oracle_pixel_threshold"] == pytest.approx(ev.oracle.value)
    assert params["oracle_pixel_f1"] == pytest.approx(MET.pixel_prf(ev.maps, ev.masks, ev.oracle.value).f1)
    # the oracle is the best image F1 on the test set: no threshold does better, the honest one included
    best = params["oracle_image_f1"]
    assert 0 < best <= 1 and MET.image_prf(ev.scores, ev.labels, params["image_threshold"]).f1 <= best + 1e-9
    assert MET.image_prf(ev.scores, ev.labels, params["oracle_image_threshold"]).f1 == pytest.approx(best)
    table = P.per_defect_table(ev)
    assert table["source"].str.contains("ORACLE").any()
    assert table["source"].str.contains("seed 000").any()
    assert table["source"].str.contains("region").any() and table["source"].str.contains("quantile").any()


def test_both_validation_rules_come_from_validation_maps_only(trained: P.Trained, data: P.Data, cfg: dict) -> None:
    ev = P.evaluate(trained, data, cfg)
    assert set(ev.honest_thresholds) == {"region", "quantile"}
    area = P.min_area_pixels(cfg, data.image_size)
    assert ev.honest_thresholds["region"] == threshold_from_normal_regions(ev.val_maps, min_area=area, q=cfg["region_q"])
    scores = region_scores(ev.val_maps, min_area=area)
    assert ev.threshold.value == pytest.approx(float(np.quantile(scores, cfg["region_q"])))
    assert ev.honest_thresholds["quantile"].value == pytest.approx(float(np.quantile(ev.val_maps, cfg["threshold_q"])))
    assert ev.threshold == ev.honest_thresholds[cfg["threshold_rule"]]
    # the region rule's promise holds exactly on the validation maps whose own threshold is lower
    passes = np.array([largest_region(m > ev.threshold.value) < area for m in ev.val_maps])
    assert np.array_equal(passes, scores <= ev.threshold.value) and passes.any()
    other = {**cfg, "threshold_rule": "quantile"}
    assert P.validation_threshold(ev.val_maps, other) == ev.honest_thresholds["quantile"]
    with pytest.raises(P.PipelineError, match="threshold_rule"):
        P.validation_threshold(ev.val_maps, {**cfg, "threshold_rule": "oracle"})
    with pytest.raises(P.PipelineError, match="threshold_rule"):  # before any data is decoded
        P.load_data(None, "hazelnut", {**cfg, "threshold_rule": "oracle"}, progress=False)
    table = P.comparison_table([ev])
    assert table.loc["conv-ae-l2", "threshold rule"] == ev.threshold.source.split(":")[-1]


def test_tau_scale_is_rms_difference(trained: P.Trained, data: P.Data, cfg: dict) -> None:
    ev = P.evaluate(trained, data, cfg)
    assert P.to_map_scale(0.2, "l2") == pytest.approx(0.04)
    assert P.from_map_scale(P.to_map_scale(0.7, "l2"), "l2") == pytest.approx(0.7)
    assert P.to_map_scale(0.2, "ssim") == 0.2
    study = P.threshold_study(ev)
    row = study["at_taus"].set_index("tau").loc[0.2]
    direct = MET.pixel_prf(ev.maps, ev.masks, 0.04)
    assert int(row["tp"]) == direct.tp and int(row["fp"]) == direct.fp
    # a pure-grey image reconstructed as black differs by 0.5 everywhere: RMS 0.5 on the tau scale
    x = np.full((1, 3, 8, 8), 0.5, np.float32)
    m = P.anomaly_maps(x, np.zeros_like(x), "l2")
    assert P.from_map_scale(float(m.max()), "l2") == pytest.approx(0.5, abs=1e-4)


def test_ssim_variant_trains(data: P.Data, cfg: dict, tmp_path: Path) -> None:
    tr = P.train_variant(data, cfg, "ssim", results_dir=tmp_path, force_train=True,
                         monitor=False, progress=False)
    ev = P.evaluate(tr, data, cfg)
    assert ev.method == "conv-ae-ssim"
    assert 0 <= ev.maps.min() and ev.maps.max() <= 2
    assert ev.metrics["image_auroc"] is not None


def test_latent_study_table(data: P.Data, cfg: dict, tmp_path: Path) -> None:
    table, evals = P.latent_study(data, cfg, [4, 16], 1, results_dir=tmp_path, force_train=True,
                                  progress=False)
    assert list(table.index) == [4, 16] and set(evals) == {4, 16}
    assert table.loc[16, "parameters"] > table.loc[4, "parameters"]
    assert "latent 4" in P.latent_checks(table)


def test_missing_masks_give_none_pixel_metrics(tiny_root: Path, cfg: dict, tmp_path: Path) -> None:
    root = tmp_path / "nomask"
    shutil.copytree(tiny_root / "hazelnut", root / "hazelnut", ignore=shutil.ignore_patterns("ground_truth"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = P.load_data(root, "hazelnut", cfg, seed=0, progress=False)
    assert not data.has_masks and data.test_masks() is None
    tr = P.train_variant(data, cfg, "l2", results_dir=tmp_path, force_train=True, progress=False)
    assert any(k.startswith("monitor_auroc_") for k in tr.history.epochs[-1])
    ev = P.evaluate(tr, data, cfg)
    assert ev.metrics["pixel_auroc"] is None and ev.metrics["pixel_f1"] is None
    path = P.save(ev, tr, data, cfg, results_dir=tmp_path, profile="smoke", seed=0)
    rec = json.loads(path.read_text())
    assert rec["threshold"] is None and rec["image_auroc"] is not None
    assert rec["params"]["oracle_pixel_threshold"] is None and rec["params"]["oracle_pixel_f1"] is None
    assert rec["params"]["image_threshold"] is not None and rec["params"]["oracle_image_f1"] is not None
    with pytest.raises(P.PipelineError, match="masks"):
        P.threshold_study(ev)


def test_bad_inputs_fail_before_training(cfg: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="DATA_ROOT"):
        P.check_data(tmp_path / "does-not-exist", "hazelnut")
    with pytest.raises(DataError):
        P.load_data(tmp_path, "hazelnut", cfg, progress=False)
    with pytest.raises(P.PipelineError, match="power of two"):
        P.load_data(tmp_path, "hazelnut", dict(cfg, image_size=100), progress=False)


@pytest.mark.notebook
@pytest.mark.slow
def test_smoke_notebook_writes_both_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("ADLIB_PROFILE", "smoke")
    results = tmp_path / "results"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), cwd=str(tmp_path),
                               parameters={"RESULTS_DIR": str(results), "NUM_THREADS": 1},
                               progress_bar=False, kernel_name="python3")
    folder = results / "01_hazelnut_autoencoder"
    for method in ("conv-ae-l2", "conv-ae-ssim"):
        path = folder / f"{method}-mvtec-hazelnut.json"
        rec = json.loads(path.read_text())
        assert set(rec) == set(RESULT_KEYS)
        assert rec["profile"] == "smoke" and rec["synthetic"] is True
        assert rec["threshold_source"].startswith("normal-validation")
        assert rec["params"]["image_threshold_source"].startswith("normal-validation")
        assert rec["params"]["oracle_pixel_f1"] is not None
        scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
        assert list(scores.columns) == ["path", "label", "defect", "score"] and len(scores) > 0


def test_augmentation_policy() -> None:
    free = {"rot90": 1.0, "rot180": 1.05, "hflip": 0.98, "vflip": 1.1}
    aligned = {"rot90": 2.0, "rot180": 1.7, "hflip": 1.5, "vflip": 1.5}
    hz = P.augmentation("hazelnut", spread=free)
    assert hz.rot90 and hz.hflip == 0.5 and hz.vflip == 0.5 and hz.noise_std > 0
    bottle = P.augmentation("bottle", spread=aligned)
    assert not bottle.rot90 and bottle.hflip == 0 and bottle.vflip == 0 and bottle.noise_std > 0
    # mirror-symmetric but not rotation-free: flips only
    mixed = P.augmentation("x", spread={**aligned, "hflip": 1.0})
    assert mixed.hflip == 0.5 and mixed.vflip == 0 and not mixed.rot90
    metal = P.augmentation("metal_nut", spread=free)
    assert metal.hflip == 0 and metal.vflip == 0 and metal.rot90  # a flipped metal nut is a defect
    assert P.augmentation("bottle", "seed").rot90
    assert not P.augmentation("hazelnut", "noise").rot90
    with pytest.raises(P.PipelineError, match="orientation check"):
        P.augmentation("bottle", "auto")
    with pytest.raises(P.PipelineError, match="AUGMENT"):
        P.augmentation("bottle", "everything")


def test_load_data_checks_orientation_on_training_images(data: P.Data) -> None:
    assert set(data.orientation) == {"rot90", "rot180", "hflip", "vflip"}
    expected = P.augmentation(data.split.category, "auto", data.augment.noise_std, data.orientation)
    assert data.augment == expected and data.train.augment == expected


def test_naive_baselines_use_unaugmented_training_images(data: P.Data, cfg: dict) -> None:
    out = P.naive_baselines(data, cfg)
    assert set(out) == {"naive: distance to mean image", "classical: variation model"}
    again = P.naive_baselines(data, cfg)  # augmented draws would differ from call to call
    assert out == again
    for vals in out.values():
        assert vals["image_auroc"] is not None and 0 <= vals["image_auroc"] <= 1


def test_ssim_variant_works_on_grey_images_like_bergmann(
    tiny_root: Path, data: P.Data, cfg: dict, tmp_path: Path
) -> None:
    assert cfg["ssim_channels"] == 1 and data.channels == 3
    grey = data.for_loss("ssim")
    assert grey is data.gray and grey.channels == 1 and data.for_loss("l2") is data
    assert grey.train[0]["image"].shape[0] == 1 and grey.test[0]["image"].shape[0] == 1
    assert [s.path for s in grey.test.samples] == [s.path for s in data.test.samples]
    assert grey.train.augment == data.train.augment
    # grey = luminance of the colour image (up to uint8 rounding)
    rgb = data.test[0]["image"]
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert torch.allclose(grey.test[0]["image"][0], lum, atol=2 / 255)
    tr = P.train_variant(data, {**cfg, "epochs": 1}, "ssim", results_dir=tmp_path, monitor=False, progress=False)
    assert tr.model.channels == 1 and "-gray" in tr.checkpoint.name
    ev = P.evaluate(tr, data, cfg)
    assert ev.x.shape[1] == 1 and ev.maps.shape == (len(data.test), *ev.x.shape[-2:])
    assert P.params(cfg, tr, data)["channels"] == 1
    colour = P.load_data(tiny_root, "hazelnut", {**cfg, "ssim_channels": None}, progress=False)
    assert colour.gray is None and colour.for_loss("ssim") is colour
