"""Notebook 06's pipeline (PatchCore / PaDiM) at smoke size: settings, every layout, reuse, views."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from adlib import experiment, results, threshold_rules
from adlib.config import SettingsError
from adlib.pipelines import feature_embed as P
from adlib.pipelines import feature_views as V

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path_factory.getbasetemp() / "data"))


@pytest.mark.parametrize("overrides, match", [
    ({"backbone": "resnet18"}, "BACKBONE"),
    ({"coreset_ratio": 0.0}, "CORESET_RATIO"),
    ({"coreset_study": "[0.1, 2]"}, "CORESET_STUDY"),
    ({"patchcore_layers": [3, 9]}, "PATCHCORE_LAYERS"),
    ({"image_size": 16}, "IMAGE_SIZE"),
    ({"reweight": "yes"}, "REWEIGHT"),
])
def test_bad_settings_are_refused_with_the_parameter(overrides: dict, match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        P.settings("smoke", overrides)


def test_layers_follow_the_backbone() -> None:
    assert P.layers(P.settings("cpu"), "patchcore") == (2, 3)
    wrn = P.settings("cpu", {"backbone": "wide_resnet50_2"})
    assert P.layers(wrn, "patchcore") == (2, 3) and P.layers(wrn, "padim") == (1, 2, 3)
    assert P.method_name("patchcore", wrn) == "patchcore-wrn50"
    assert P.working_size(P.settings("cpu"), "dagm") == 512
    assert P.working_size(P.settings("cpu", {"image_size": 320}), "dagm") == 320
    assert P.working_size(P.settings("cpu"), "dagm", native=256) == 256  # never upsampled


def _run(tmp: Path, dataset: str, category: str | None, force: bool):
    cfg = P.settings("smoke")
    run = experiment.run_id(0, cfg, exclude=P.SELECTION, data_root=None, dataset=dataset, category=category)
    data = P.load(cfg, dataset=dataset, data_root=None, category=category, seed=0, progress=False)
    fitted = [P.train(data, cfg, v, results_dir=tmp, run=run, force=force, progress=False) for v in P.VARIANTS]
    evals = P.evaluate(fitted, data, cfg)
    paths = P.save(evals, fitted, data, cfg, results_dir=tmp, profile="smoke", seed=0, run=run)
    return cfg, data, fitted, evals, paths, run


@pytest.mark.slow
def test_fit_save_and_reuse_reproduce_the_results(tmp_path: Path) -> None:
    cfg, data, fitted, evals, paths, run = _run(tmp_path, "mvtec", "bottle", force=True)
    assert [p.name for p in paths] == [f"patchcore-mvtec-bottle-{run}.json", f"padim-mvtec-bottle-{run}.json"]
    first = [json.loads(p.read_text()) for p in paths]
    for raw, ev in zip(first, evals, strict=True):
        assert raw["params"]["image_threshold_source"].startswith("normal-validation")
        assert raw["threshold_source"].startswith("normal-validation")
        assert raw["params"]["oracle_pixel_f1"] >= raw["pixel_f1"] - 1e-12
        assert results.load_scores(paths[0]).shape[0] == len(data.test)
        assert 0 <= raw["image_auroc"] <= 1 and raw["ci95"]["image_auroc"][0] <= raw["image_auroc"]
        assert ev.maps.shape == (len(data.test), data.size, data.size)
    assert first[0]["params"]["bank_patches"] == len(fitted[0].model.bank)
    _, _, again, evals2, paths2, _ = _run(tmp_path, "mvtec", "bottle", force=False)
    assert all(f.reused for f in again)
    assert [f.train_seconds for f in again] == [f.train_seconds for f in fitted]
    for raw, path in zip(first, paths2, strict=True):
        new = json.loads(path.read_text())
        for key in (*results.METRIC_KEYS, "threshold", "train_seconds"):
            assert new[key] == raw[key], key


@pytest.mark.slow
@pytest.mark.parametrize("dataset, category", [("dagm", "Class8"), ("rsdd", None), ("sem", None)])
def test_every_layout_runs(tmp_path: Path, dataset: str, category: str | None) -> None:
    _, data, _, evals, paths, _ = _run(tmp_path, dataset, category, force=True)
    assert data.split.dataset == dataset and data.train.shape[1] == data.split.channels
    assert len(paths) == 2 and all(np.isfinite(ev.scores).all() for ev in evals)


@pytest.mark.slow
def test_views_study_costs_and_failures(tmp_path: Path) -> None:
    cfg, data, fitted, evals, _, _ = _run(tmp_path, "mvtec", "bottle", force=True)
    study = V.coreset_study(fitted[0], data, cfg, [0.05, 0.5], progress=False)
    assert study["bank_patches"].is_monotonic_increasing and study["select_s"].is_monotonic_increasing
    assert study["memory_mb"].iloc[1] > study["memory_mb"].iloc[0]
    costs = V.cost_table(fitted, evals, data)
    assert set(costs.index) == {"patchcore", "padim"} and (costs["score_ms_per_image"] > 0).all()
    fig, table = V.show_failures(data, evals[0], k=2)
    assert len(table) == 4 and set(table["kind"]) == {"lowest-scored defective", "highest-scored normal"}
    assert V.metrics_table(evals).loc["patchcore", "image AUROC"] == pytest.approx(evals[0].metrics["image_auroc"], abs=1e-3)
    assert V.show_maps(data, evals, [0, 1]) is not None


@pytest.mark.slow
def test_without_masks_only_image_metrics(tmp_path: Path) -> None:
    """A dataset without ground truth (the dev kit's bottle copy): image metrics, no crash."""
    cfg = P.settings("smoke")
    data = P.load(cfg, dataset="mvtec", data_root=None, category="bottle", seed=0, progress=False)
    data.test_masks = None
    fitted = [P.train(data, cfg, v, results_dir=tmp_path, run="s0-nomask", force=True, progress=False)
              for v in P.VARIANTS]
    evals = P.evaluate(fitted, data, cfg)
    assert all(ev.metrics["pixel_auroc"] is None and ev.metrics["image_auroc"] is not None for ev in evals)
    study = V.coreset_study(fitted[0], data, cfg, [0.1, 0.5], progress=False)
    assert study["pixel_auroc"].isna().all() and V.plot_coreset_study(study) is not None
    _, table = V.show_failures(data, evals[0], k=1)
    assert table["defect area (%)"].isna().all()
    assert V.show_maps(data, evals, [0]) is not None


def test_an_unreadable_fit_is_refitted_with_a_warning(tmp_path: Path) -> None:
    cfg = P.settings("smoke")
    data = P.load(cfg, dataset="mvtec", data_root=None, category="bottle", seed=0, progress=False)
    first = P.train(data, cfg, "padim", results_dir=tmp_path, run="s0-x", force=True, progress=False)
    first.checkpoint.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="cannot be read"):
        again = P.train(data, cfg, "padim", results_dir=tmp_path, run="s0-x", progress=False)
    assert not again.reused and again.checkpoint.stat().st_size > 100
    (ev,) = P.evaluate(again, data, cfg)
    assert ev.pixel_threshold.source.startswith("normal-validation")
    val_maps = P.score(again, data.val, cfg).maps  # the results' rule, refitted from them alone
    assert P.PIXEL_RULE == "image_max"
    expected = threshold_rules.image_max_threshold(val_maps, cfg["image_threshold_q"])
    assert ev.pixel_threshold.value == pytest.approx(expected.value)
    assert ev.pixel_threshold.value == pytest.approx(np.quantile(val_maps.reshape(len(val_maps), -1).max(1),
                                                                 cfg["image_threshold_q"]))
