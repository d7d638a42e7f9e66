"""Tests for the notebook-01 pipeline verbs (seed 000 autoencoder) on tiny synthetic data."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from adlib import experiment, metrics
from adlib.config import SettingsError
from adlib.data.types import DataError
from adlib.maps import image_scores
from adlib.pipelines import hazelnut_ae
from adlib.results import RESULT_KEYS
from adlib.thresholds import largest_region, region_scores, threshold_from_normal_regions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_hazelnut_autoencoder.ipynb"
RUN = "s0-7e5701"


@pytest.fixture(scope="module")
def cfg() -> dict:
    return hazelnut_ae.settings("smoke", {"image_size": 32})


@pytest.fixture(scope="module")
def data(cfg: dict) -> hazelnut_ae.Data:
    return hazelnut_ae.load(cfg, data_root=None, seed=0, progress=False)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("res")


@pytest.fixture(scope="module")
def trained(data: hazelnut_ae.Data, cfg: dict, results_dir: Path) -> hazelnut_ae.Trained:
    torch.set_num_threads(1)
    return hazelnut_ae.train(data, cfg, "l2", results_dir=results_dir, run=RUN, force=True, progress=False)


@pytest.fixture(scope="module")
def ev(trained: hazelnut_ae.Trained, data: hazelnut_ae.Data, cfg: dict) -> hazelnut_ae.Evaluation:
    (only,) = hazelnut_ae.evaluate(trained, data, cfg)
    return only


def test_profiles_share_keys_and_paper_matches_seed() -> None:
    keys = {k: set(v) for k, v in hazelnut_ae.PROFILES.items()}
    assert keys["smoke"] == keys["cpu"] == keys["paper"]
    paper = hazelnut_ae.PROFILES["paper"]
    assert (paper["epochs"], paper["image_size"], paper["latent_dim"]) == (1000, 256, 500)
    assert paper["augment_factor"] == 5
    smoke = hazelnut_ae.PROFILES["smoke"]
    assert len(smoke["latent_sizes"]) == 2 and smoke["latent_epochs"] == 1 and smoke["synthetic_size"] == "tiny"
    assert set(hazelnut_ae.PARAMETERS) <= keys["smoke"]
    assert hazelnut_ae.VARIANTS == ("l2", "ssim") and set(hazelnut_ae.VARIANTS) == set(hazelnut_ae.METHODS)


def test_settings_parse_text_and_refuse_bad_values() -> None:
    cfg = hazelnut_ae.settings("smoke", {"latent_sizes": "[50]", "epochs": "3", "latent_dim": None})
    assert cfg["latent_sizes"] == [50] and cfg["epochs"] == 3 and cfg["latent_dim"] == 500
    refused = [
        ({"epochs": 0}, "EPOCHS=0"), ({"latent_sizes": "[0, 50]"}, "LATENT_SIZES"),
        ({"latent_sizes": "fifty"}, "LATENT_SIZES"), ({"image_size": 100}, "power of two"),
        ({"image_size": "abc"}, "IMAGE_SIZE"), ({"augment": "everything"}, "AUGMENT"),
        ({"threshold_rule": "oracle"}, "THRESHOLD_RULE"), ({"threshold_q": 1.0}, "THRESHOLD_Q"),
        ({"monitor_every": -1}, "MONITOR_EVERY"), ({"ssim_channels": 2}, "SSIM_CHANNELS"),
        ({"nonsense": 1}, "Unknown setting"),
    ]
    for overrides, message in refused:
        with pytest.raises(SettingsError, match=message):
            hazelnut_ae.settings("smoke", overrides)
    assert hazelnut_ae.settings("smoke", {"region_q": 1.0})["region_q"] == 1.0  # the paper's max
    assert hazelnut_ae.run_options(None, False, "smoke") is True
    assert hazelnut_ae.run_options(None, False, "cpu") is False
    with pytest.raises(SettingsError, match="NUM_THREADS"):
        hazelnut_ae.run_options("two", False, "cpu")
    with pytest.raises(SettingsError, match="FORCE_TRAIN"):
        hazelnut_ae.run_options(None, "yes", "cpu")


def test_validation_holdout_is_defect_free_and_disjoint(data: hazelnut_ae.Data) -> None:
    train = {s.path for s in data.train.samples}
    val = {s.path for s in data.val.samples}
    test = {s.path for s in data.test.samples}
    assert val and train and not (train & val) and not (val & test)
    assert all(s.label == 0 for s in data.val.samples)
    assert data.synthetic and data.augment_factor == 2 and data.image_size == 32
    assert len(hazelnut_ae.Repeated(data.train, 2)) == 2 * len(data.train)


def test_spec_builds_the_learner(data: hazelnut_ae.Data, cfg: dict) -> None:
    spec = hazelnut_ae.spec(data, cfg, "l2")
    assert isinstance(spec, experiment.TrainSpec) and spec.loss_fn is F.mse_loss
    assert spec.name == "conv-ae-l2-mvtec-hazelnut-z500-e1" and spec.epochs == 1
    assert isinstance(spec.on_epoch_end, hazelnut_ae.Monitor)
    assert len(spec.loader.dataset) == 2 * len(data.train)  # augment_factor copies per epoch
    # the same seed gives the same initial weights (checkpoints are reproducible)
    again = hazelnut_ae.spec(data, cfg, "l2")
    assert all(torch.equal(a, b) for a, b in zip(spec.model.state_dict().values(),
                                                 again.model.state_dict().values(), strict=True))
    assert spec.model(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    quiet = hazelnut_ae.spec(data, {**cfg, "monitor_every": 0, "latent_dim": 8}, "l2")
    assert quiet.on_epoch_end is None and quiet.name.endswith("-z8-e1-nomonitor")
    with pytest.raises(SettingsError, match="variant"):
        hazelnut_ae.spec(data, cfg, "l1")


def test_training_logs_losses_and_monitor(trained: hazelnut_ae.Trained, data: hazelnut_ae.Data) -> None:
    hist = trained.history
    assert hist.steps and "loss" in hist.steps[0]
    epoch = hist.epochs[-1]
    assert "val_loss" in epoch
    assert any(k.startswith("monitor_f1_") for k in epoch)
    assert trained.checkpoint.exists() and not trained.reused
    assert trained.checkpoint.name == f"conv-ae-l2-mvtec-hazelnut-z500-e1-{RUN}.pt"
    assert trained.checkpoint.parent.name == "checkpoints"
    # the logged validation loss is the L2 loss on the held-out normal images, computed by hand
    x = torch.stack([data.val[i]["image"] for i in range(len(data.val))])
    with torch.no_grad():
        by_hand = ((trained.model(x) - x) ** 2).mean().item()
    assert epoch["val_loss"] == pytest.approx(by_hand, rel=1e-5)


def test_evaluate_and_save_results(
    ev: hazelnut_ae.Evaluation, trained: hazelnut_ae.Trained, data: hazelnut_ae.Data, cfg: dict, tmp_path: Path
) -> None:
    assert isinstance(ev, experiment.Evaluation) and ev.method == "conv-ae-l2"
    assert ev.maps.shape == (len(data.test), 32, 32) and ev.x.shape == ev.recon.shape == (len(data.test), 3, 32, 32)
    assert ev.pixel_threshold.source.startswith("normal-validation") and ev.threshold == ev.pixel_threshold
    assert ev.oracle_pixel is not None and ev.oracle_pixel.is_oracle
    assert set(ev.metrics["per_defect"]) == {"crack", "cut", "hole", "print"}
    np.testing.assert_array_equal(ev.predicted(), ev.maps > ev.threshold.value)
    (path,) = hazelnut_ae.save([ev], trained, data, cfg, results_dir=tmp_path, profile="smoke", seed=0, run=RUN)
    assert path.name == f"conv-ae-l2-mvtec-hazelnut-{RUN}.json"
    rec = json.loads(path.read_text())
    assert set(RESULT_KEYS) <= set(rec) and rec["run_id"] == RUN
    assert rec["method"] == "conv-ae-l2" and rec["synthetic"] is True
    assert rec["threshold_source"].startswith("normal-validation")
    assert rec["train_seconds"] == pytest.approx(trained.history.train_seconds)
    scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
    assert list(scores.columns) == ["path", "label", "defect", "score"]
    assert len(scores) == len(data.test)
    params = rec["params"]
    for key in ("image_threshold", "image_threshold_source", "oracle_image_threshold", "oracle_image_f1",
                "oracle_pixel_threshold", "oracle_pixel_f1", "pixel_threshold_region", "pixel_threshold_quantile"):
        assert key in params, key
    assert params["image_threshold_source"] == "normal-validation:quantile-0.95"
    assert params["epochs"] == 1 and params["latent_dim"] == 500 and params["channels"] == 3
    val_scores = image_scores(ev.val_maps, cfg["score"])
    assert params["image_threshold"] == pytest.approx(float(np.quantile(val_scores, 0.95)))
    assert params["oracle_pixel_threshold"] == pytest.approx(ev.oracle_pixel.value)
    assert params["oracle_pixel_f1"] == pytest.approx(metrics.pixel_prf(ev.maps, ev.masks, ev.oracle_pixel.value).f1)
    # the oracle is the best F1 on the test set: no threshold does better, the honest one included
    best = params["oracle_image_f1"]
    assert 0 < best <= 1 and metrics.image_prf(ev.scores, ev.labels, params["image_threshold"]).f1 <= best + 1e-9
    assert metrics.image_prf(ev.scores, ev.labels, params["oracle_image_threshold"]).f1 == pytest.approx(best)
    assert params["oracle_pixel_f1"] >= rec["pixel_f1"] - 1e-9


def test_reuse_from_checkpoint_reproduces_metrics_and_seconds(
    trained: hazelnut_ae.Trained, ev: hazelnut_ae.Evaluation, data: hazelnut_ae.Data, cfg: dict, results_dir: Path
) -> None:
    again = hazelnut_ae.train(data, cfg, "l2", results_dir=results_dir, run=RUN, progress=False)
    assert again.reused and again.checkpoint == trained.checkpoint
    assert again.train_seconds == trained.train_seconds
    (ev2,) = hazelnut_ae.evaluate(again, data, cfg)
    assert ev2.metrics == ev.metrics and np.array_equal(ev2.scores, ev.scores)
    other = hazelnut_ae.train(data, cfg, "l2", results_dir=results_dir, run="s0-0e0e0e", progress=False)
    assert not other.reused  # another run id never reuses the weights


def test_both_validation_rules_come_from_validation_maps_only(ev: hazelnut_ae.Evaluation, data, cfg) -> None:
    assert set(ev.pixel_thresholds) == {"auto", "region", "quantile", "k_sigma", "tail", "image_max"}
    maxima = ev.val_maps.reshape(len(ev.val_maps), -1).max(axis=1)
    assert ev.pixel_thresholds["image_max"].value == pytest.approx(float(np.quantile(maxima, cfg["image_threshold_q"])))
    area = hazelnut_ae.min_area_pixels(cfg, data.image_size)
    region = ev.pixel_thresholds["region"]
    assert region == threshold_from_normal_regions(ev.val_maps, min_area=area, q=cfg["region_q"])
    scores = region_scores(ev.val_maps, min_area=area)
    assert region.value == pytest.approx(float(np.quantile(scores, cfg["region_q"])))
    assert ev.pixel_thresholds["quantile"].value == pytest.approx(float(np.quantile(ev.val_maps, cfg["threshold_q"])))
    assert ev.threshold == ev.pixel_thresholds[cfg["threshold_rule"]]
    auto = ev.pixel_thresholds["auto"]  # one of the auto candidates, chosen on the validation maps
    assert any(auto.value == t.value and auto.source.startswith(t.source)
               for k, t in ev.pixel_thresholds.items() if k != "auto")
    # the region rule's promise holds exactly on the validation maps whose own threshold is lower
    passes = np.array([largest_region(m > region.value) < area for m in ev.val_maps])
    assert np.array_equal(passes, scores <= region.value) and passes.any()
    assert hazelnut_ae.validation_thresholds(ev.val_maps, cfg) == ev.pixel_thresholds


def test_ssim_variant_works_on_grey_images_like_bergmann(data: hazelnut_ae.Data, cfg: dict, tmp_path: Path) -> None:
    assert cfg["ssim_channels"] == 1 and data.channels == 3
    grey = data.for_variant("ssim")
    assert grey is data.gray and grey.channels == 1 and data.for_variant("l2") is data
    assert grey.train[0]["image"].shape[0] == 1 and grey.test[0]["image"].shape[0] == 1
    assert [s.path for s in grey.test.samples] == [s.path for s in data.test.samples]
    assert grey.train.augment == data.train.augment
    # grey = luminance of the colour image (up to uint8 rounding)
    rgb = data.test[0]["image"]
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert torch.allclose(grey.test[0]["image"][0], lum, atol=2 / 255)
    tr = hazelnut_ae.train(data, {**cfg, "monitor_every": 0}, "ssim", results_dir=tmp_path, run=RUN, progress=False)
    assert tr.model.channels == 1 and tr.checkpoint.name.endswith(f"-gray-nomonitor-{RUN}.pt")
    (ev,) = hazelnut_ae.evaluate(tr, data, cfg)
    assert ev.method == "conv-ae-ssim" and ev.variant == "ssim"
    assert ev.x.shape[1] == 1 and ev.maps.shape == (len(data.test), *ev.x.shape[-2:])
    assert 0 <= ev.maps.min() and ev.maps.max() <= 2 and ev.metrics["image_auroc"] is not None
    assert hazelnut_ae.params(cfg, tr, data)["channels"] == 1


def test_colour_ssim_when_asked(cfg: dict) -> None:
    colour = hazelnut_ae.load({**cfg, "ssim_channels": 3}, progress=False)
    assert colour.gray is None and colour.for_variant("ssim") is colour


def test_missing_masks_give_none_pixel_metrics(data: hazelnut_ae.Data, cfg: dict, tmp_path: Path) -> None:
    root = tmp_path / "nomask"
    shutil.copytree(data.split.root / "hazelnut", root / "hazelnut", ignore=shutil.ignore_patterns("ground_truth"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = hazelnut_ae.load(cfg, data_root=root, seed=0, progress=False)
    assert not plain.has_masks and plain.test_masks() is None and not plain.synthetic
    tr = hazelnut_ae.train(plain, cfg, "l2", results_dir=tmp_path, run=RUN, force=True, progress=False)
    assert any(k.startswith("monitor_auroc_") for k in tr.history.epochs[-1])
    (ev,) = hazelnut_ae.evaluate(tr, plain, cfg)
    assert ev.metrics["pixel_auroc"] is None and ev.metrics["pixel_f1"] is None and ev.pixel_threshold is None
    assert ev.threshold.source.startswith("normal-validation")  # still there for the figures
    (path,) = hazelnut_ae.save([ev], tr, plain, cfg, results_dir=tmp_path, profile="smoke", seed=0, run=RUN)
    rec = json.loads(path.read_text())
    assert rec["threshold"] is None and rec["image_auroc"] is not None
    assert rec["params"]["oracle_pixel_threshold"] is None and rec["params"]["oracle_pixel_f1"] is None
    assert rec["params"]["image_threshold"] is not None and rec["params"]["oracle_image_f1"] is not None


def test_bad_data_roots_fail_before_training(cfg: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="DATA_ROOT"):
        hazelnut_ae.load(cfg, data_root=tmp_path / "does-not-exist", progress=False)
    with pytest.raises(DataError):
        hazelnut_ae.load(cfg, data_root=tmp_path, progress=False)


def test_augmentation_policy() -> None:
    free = {"rot90": 1.0, "rot180": 1.05, "hflip": 0.98, "vflip": 1.1}
    aligned = {"rot90": 2.0, "rot180": 1.7, "hflip": 1.5, "vflip": 1.5}
    hz = hazelnut_ae.augmentation("hazelnut", spread=free)
    assert hz.rot90 and hz.hflip == 0.5 and hz.vflip == 0.5 and hz.noise_std > 0
    bottle = hazelnut_ae.augmentation("bottle", spread=aligned)
    assert not bottle.rot90 and bottle.hflip == 0 and bottle.vflip == 0 and bottle.noise_std > 0
    # mirror-symmetric but not rotation-free: flips only
    mixed = hazelnut_ae.augmentation("x", spread={**aligned, "hflip": 1.0})
    assert mixed.hflip == 0.5 and mixed.vflip == 0 and not mixed.rot90
    metal = hazelnut_ae.augmentation("metal_nut", spread=free)
    assert metal.hflip == 0 and metal.vflip == 0 and metal.rot90  # a flipped metal nut is a defect
    assert hazelnut_ae.augmentation("bottle", "seed").rot90
    assert not hazelnut_ae.augmentation("hazelnut", "noise").rot90
    with pytest.raises(ValueError, match="orientation check"):
        hazelnut_ae.augmentation("bottle", "auto")
    with pytest.raises(SettingsError, match="AUGMENT"):
        hazelnut_ae.augmentation("bottle", "everything")


def test_load_checks_orientation_on_training_images(data: hazelnut_ae.Data) -> None:
    assert set(data.orientation) == {"rot90", "rot180", "hflip", "vflip"}
    expected = hazelnut_ae.augmentation(data.split.category, "auto", data.augment.noise_std, data.orientation)
    assert data.augment == expected and data.train.augment == expected


@pytest.mark.notebook
@pytest.mark.slow
def test_smoke_notebook_writes_both_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("ADLIB_PROFILE", "smoke")
    results = tmp_path / "results"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), cwd=str(tmp_path),
                               parameters={"RESULTS_DIR": str(results), "NUM_THREADS": 1,
                                           "LATENT_SIZES": "[50]"},
                               progress_bar=False, kernel_name="python3")
    folder = results / "01_hazelnut_autoencoder"
    for method in ("conv-ae-l2", "conv-ae-ssim"):
        (path,) = folder.glob(f"{method}-mvtec-hazelnut-s0-*.json")
        rec = json.loads(path.read_text())
        assert set(RESULT_KEYS) <= set(rec) and path.stem.endswith(rec["run_id"])
        assert rec["profile"] == "smoke" and rec["synthetic"] is True
        assert rec["threshold_source"].startswith("normal-validation")
        assert rec["params"]["image_threshold_source"].startswith("normal-validation")
        assert rec["params"]["oracle_pixel_f1"] is not None
        scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
        assert list(scores.columns) == ["path", "label", "defect", "score"] and len(scores) > 0
    latent = [p.name for p in (folder / "checkpoints").glob("*-z50-e1-nomonitor-s0-*.pt")]
    assert len(latent) == 1, latent  # the text list was parsed: one latent-study model


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_refuses_epochs_zero_in_the_setup_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("ADLIB_PROFILE", "smoke")
    results = tmp_path / "results"
    with pytest.raises(papermill.PapermillExecutionError, match="EPOCHS=0") as info:
        papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), cwd=str(tmp_path),
                                   parameters={"RESULTS_DIR": str(results), "EPOCHS": 0},
                                   progress_bar=False, kernel_name="python3")
    assert "hazelnut_ae.settings" in info.value.source
    assert not list(results.rglob("*.json")) and not list(results.rglob("*.pt"))
