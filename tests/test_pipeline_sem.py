"""Tests for the notebook-03 pipeline (SEM patches, AEs + denoiser) on the tiny synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlib import config
from adlib import results as R
from adlib.data.types import DataError
from adlib.pipelines import sem_patches as P


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the test machine is shared


def _tiny_cfg(**over) -> dict:
    cfg = config.pick("smoke", P.PROFILES, {})
    cfg.update({"n_train": 64, "max_val_patches": 32, "den_depth": 2, "depth_study": [1, 2],
                "den_width": 4, "base": 4, "latent_dim": 8}, **over)
    return cfg


@pytest.fixture(scope="module")
def data() -> P.Data:
    torch.set_num_threads(1)
    return P.load_data(None, "nanofibres", _tiny_cfg(), seed=0, progress=False)


def test_profiles_have_the_same_keys() -> None:
    keys = {name: set(cfg) for name, cfg in P.PROFILES.items()}
    assert set(keys) == {"smoke", "cpu", "paper"}
    assert keys["smoke"] == keys["cpu"] == keys["paper"]
    assert all(cfg["image_size"] == 32 for cfg in P.PROFILES.values())  # the seed's patch size
    assert P.PROFILES["paper"]["den_depth"] == 20 and 10 in P.PROFILES["cpu"]["depth_study"]


def test_bad_settings_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(P.PipelineError, match="multiple of 8"):
        P.load_data(None, "nanofibres", _tiny_cfg(image_size=20), progress=False)
    with pytest.raises(DataError, match=str(tmp_path)):
        P.load_data(tmp_path, "nanofibres", _tiny_cfg(), progress=False)


def test_patches_and_splits(data: P.Data) -> None:
    p = data.patches
    assert p.train.shape[1:3] == (32, 32) and len(p.train) == 64
    assert p.test.shape[1:3] == (32, 32) and len(data.val) > 0
    train = {s.path for s in data.train_samples}
    val = {s.path for s in data.val_samples}
    test = {s.path for s in data.split.test}
    assert not (train & val) and not (train & test) and not (val & test)
    # labels follow the masks: anomalous iff at least label_min_fraction of the patch is defect
    frac = p.test_masks.reshape(len(p.test_masks), -1).mean(axis=1)
    np.testing.assert_array_equal(p.test_labels, (frac >= 0.05).astype(int))
    assert 0 < p.test_labels.sum() < len(p.test_labels)
    # overlapping grid (stride 16 < 32) that covers every pixel of every test image
    for i, shape in enumerate(data.image_shapes):
        cover = np.zeros(shape, int)
        for y, x in p.test_coords[p.test_source == i]:
            cover[y:y + 32, x:x + 32] += 1
        assert cover.min() >= 1 and cover.max() > 1
    paths = data.patch_paths()
    assert len(paths) == len(p.test) and len(set(paths)) == len(paths)


def test_scores_and_stitching(data: P.Data) -> None:
    x = np.full((2, 1, 4, 4), 0.5, np.float32)
    st = P.Stages(x=x, recon=x - 0.1, denoised=x, mask=np.zeros_like(x))
    sc = st.scores()
    np.testing.assert_allclose(sc["rec"], 0.01, rtol=1e-5)
    np.testing.assert_allclose(sc["smooth"], 0.0)
    np.testing.assert_allclose(sc["feature"], 0.25)
    maps = P.stitch(data, np.full(len(data.patches.test), 3.0))
    assert [m.shape for m in maps] == [tuple(s) for s in data.image_shapes]
    assert all(np.allclose(m, 3.0) for m in maps)


def test_train_evaluate_save(data: P.Data, tmp_path: Path) -> None:
    cfg = _tiny_cfg()
    trained = P.train_all(data, cfg, results_dir=tmp_path, seed=0, force_train=True,
                          depths=cfg["depth_study"], progress=False)
    assert set(trained) == {"sae", "dae", "cvae"}
    assert all(set(t.denoisers) == {1, 2} for t in trained.values())
    assert all(not p.requires_grad for p in trained["sae"].ae.parameters())  # frozen for the denoiser
    assert len(list((tmp_path / P.NOTEBOOK / "checkpoints").glob("*.pt"))) == 9

    evals, stages = P.evaluate_all(data, trained, cfg)
    assert len(evals) == 9 and set(stages) == {"sae", "dae", "cvae"}
    ev = evals[("dae", "feature")]
    assert ev.threshold.source.startswith("normal-validation") and ev.oracle.is_oracle
    # the threshold is the quantile of the VALIDATION scores, not of the test scores
    assert ev.threshold.value == pytest.approx(np.quantile(ev.val_scores, cfg["threshold_q"]))
    assert 0.0 <= ev.metrics["image_auroc"] <= 1.0 and ev.metrics["pixel_auroc"] is not None

    table = P.seed_table(evals, "feature")
    assert list(table.index) == ["SAE", "DAE", "CVAE"]
    assert table["seed AUROC"].notna().all()  # the seed's numbers from adlib.published
    assert "F1 (oracle threshold)" in table.columns
    ranking = P.ranking_check(evals, data)
    assert list(ranking.index) == ["SAE", "DAE", "CVAE"]
    assert ranking["AUROC mean x^2 (no model)"].between(0, 1).all()
    depth = P.depth_study(data, trained, cfg)
    assert depth.loc[("SAE", 2), "mask corr. with deepest"] == pytest.approx(1.0)

    paths = P.save_all(evals, data, trained, cfg, results_dir=tmp_path, profile="smoke", seed=0)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{m}-{s}-sem-nanofibres.json" for m in ("sae", "dae", "cvae")
                           for s in ("rec", "smooth", "feature"))
    for path in paths:
        rec = json.loads(path.read_text())
        assert list(rec) == list(R.RESULT_KEYS)
        assert rec["synthetic"] is True and rec["profile"] == "smoke"
        assert rec["threshold_source"].startswith("normal-validation")
        assert rec["params"]["patch_prf_oracle"]["threshold_source"] == "oracle-test"
        scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
        assert len(scores) == len(data.patches.test)  # one row per test patch
        again = R.image_metrics_from_scores(scores)
        assert again["image_auroc"] == pytest.approx(rec["image_auroc"], abs=1e-6)

    # a second run loads the checkpoints instead of retraining
    again = P.train_all(data, cfg, results_dir=tmp_path, seed=0, depths=cfg["depth_study"],
                        progress=False)
    assert all(t.ae_seconds == 0.0 and not t.ae_history.trained for t in again.values())
    for kind in again:
        for a, b in zip(again[kind].ae.parameters(), trained[kind].ae.parameters(), strict=True):
            assert torch.equal(a, b)


def test_baseline_table_is_model_free_and_consistent(data: P.Data) -> None:
    table = P.baseline_table(data)
    assert list(table.index) == ["mean x^2 (raw)", "mean x (per-image normalised)",
                                 "mean x^2 (per-image normalised)", "thickness (shape, no model)"]
    assert table.loc["mean x^2 (raw)", "patch AUROC"] == pytest.approx(P.energy_auroc(data), abs=1e-3)
    auc = table["patch AUROC"]
    np.testing.assert_allclose(table["max(AUROC, 1 - AUROC)"], np.maximum(auc, 1 - auc), atol=1e-3)
    assert table["max(AUROC, 1 - AUROC)"].between(0.5, 1.0).all()
