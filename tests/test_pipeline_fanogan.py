"""Tests for the notebook-04 pipeline (f-AnoGAN vs autoencoder) on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from adlib import metrics
from adlib.data.types import DataError
from adlib.pipelines import fanogan_vs_ae as pipe

GUIDE_KEYS = {
    "notebook", "method", "dataset", "category", "synthetic", "profile", "seed", "image_auroc",
    "image_aupr", "pixel_auroc", "aupro", "pixel_f1", "pixel_precision", "pixel_recall",
    "threshold", "threshold_source", "per_defect", "train_seconds", "params",
}
KIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec"


def test_resolve_categories() -> None:
    assert pipe.resolve_categories("bottle", ["bottle", "carpet"]) == ["bottle", "carpet"]
    assert pipe.resolve_categories("carpet", ["bottle", "carpet"]) == ["carpet", "bottle"]
    # papermill -p CATEGORY transistor: only the named category runs
    assert pipe.resolve_categories("transistor", ["bottle", "carpet"]) == ["transistor"]
    assert pipe.resolve_categories("bottle", None) == ["bottle"]
    with pytest.raises(pipe.ConfigError):
        pipe.resolve_categories("bottle", [])
    with pytest.raises(pipe.ConfigError):
        pipe.resolve_categories("bottle", "bottle")


def test_settings_overrides_and_errors() -> None:
    s = pipe.settings_for("cpu", image_size=64, epochs=None)
    assert s["image_size"] == 64 and s["epochs"] == pipe.PROFILES["cpu"]["epochs"]
    paper = pipe.settings_for("paper")
    assert (paper["image_size"], paper["epochs"], paper["ae_latent"], paper["ae_lr"]) == (256, 300, 1024, 1e-3)
    assert (paper["gan_image_size"], paper["latent_dim"], paper["gan_batch"], paper["gan_lr"],
            paper["n_critic"], paper["gan_epochs"], paper["encoder_epochs"]) == (64, 100, 32, 2e-4, 5, 1500, 200)
    with pytest.raises(pipe.ConfigError, match="IMAGE_SIZE"):
        pipe.settings_for("cpu", image_size=100)
    with pytest.raises(pipe.ConfigError, match="Unknown setting"):
        pipe.settings_for("cpu", image_szie=64)


def test_missing_data_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        pipe.load_all(tmp_path, ["bottle"], pipe.settings_for("smoke"))


def test_training_augmentation_is_flip_only_and_never_on_test() -> None:
    split, _ = pipe.load_category(None, "bottle", pipe.settings_for("smoke"))
    data = pipe.datasets(split, 32, pipe.settings_for("smoke"))
    aug = data.train.augment
    assert aug is not None and aug.hflip == 0.5 and aug.vflip == 0 and not aug.rot90
    assert data.val.augment is None and data.test.augment is None
    train_paths = {s.path for s in data.train.samples}
    assert not train_paths & {s.path for s in data.val.samples}
    assert not train_paths & {s.path for s in data.test.samples}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pipe.CategoryRun, Path]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("results")
    s = pipe.settings_for("smoke")
    (split, synthetic), = pipe.load_all(None, ["bottle"], s).values()
    run = pipe.run_category(split, synthetic, s, profile="smoke", device=torch.device("cpu"),
                            results_dir=out)
    return run, out


def test_smoke_run_writes_guide_results(smoke_run: tuple[pipe.CategoryRun, Path]) -> None:
    run, out = smoke_run
    folder = out / pipe.NOTEBOOK
    for method in (pipe.AE_METHOD, pipe.GAN_METHOD):
        path = folder / f"{method}-mvtec-bottle.json"
        rec = json.loads(path.read_text())
        assert set(rec) == GUIDE_KEYS
        assert rec["profile"] == "smoke" and rec["synthetic"] is True and rec["method"] == method
        assert rec["threshold_source"].startswith("normal-validation")
        assert 0.0 <= rec["image_auroc"] <= 1.0 and rec["pixel_auroc"] is not None  # synthetic has masks
        scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
        assert list(scores.columns) == ["path", "label", "defect", "score"]
        assert len(scores) == len(run.split.test) and set(scores["label"]) == {0, 1}
        # honest and oracle thresholds for notebook 05, under the names it reads
        params = rec["params"]
        res = run.ae if method == pipe.AE_METHOD else run.fanogan
        assert params["image_threshold"] == pytest.approx(res.image_threshold.value)
        assert params["image_threshold_source"].startswith("normal-validation")
        assert params["oracle_image_threshold"] == pytest.approx(res.image_oracle.value)
        labels = scores["label"].to_numpy()
        f1 = metrics.image_prf(scores["score"].to_numpy(), labels, params["oracle_image_threshold"]).f1
        assert params["oracle_image_f1"] == pytest.approx(f1) and 0.0 < f1 <= 1.0
        best_f1 = max(metrics.image_prf(scores["score"].to_numpy(), labels, t).f1
                      for t in scores["score"])  # no test-score threshold beats the oracle
        assert params["oracle_image_f1"] >= best_f1 - 1e-9
        assert 0.0 < params["oracle_pixel_f1"] <= 1.0  # synthetic data has masks
        assert isinstance(params["oracle_pixel_threshold"], float)


def test_smoke_run_gan_schedule_and_snapshots(smoke_run: tuple[pipe.CategoryRun, Path]) -> None:
    run, _ = smoke_run
    steps = run.gan.gan_history.to_frame("step")
    n_critic = pipe.PROFILES["smoke"]["n_critic"]
    assert steps["critic_loss"].notna().all()
    with_gen = steps.loc[steps["generator_loss"].notna(), "step"].tolist()
    assert with_gen and all((s + 1) % n_critic == 0 for s in with_gen)
    assert {"wasserstein", "gp"} <= set(steps.columns)
    assert len(run.gan.sample_grids) == pipe.PROFILES["smoke"]["gan_epochs"]
    assert all(p.is_file() for p in run.gan.sample_grids)
    checks = pipe.encoder_checks(run, n=2)
    assert checks["x"].shape == checks["x_recon"].shape == checks["g_cycle"].shape
    table = pipe.comparison_table([run])
    assert table.loc[table["method"] == pipe.GAN_METHOD, "AUROC (seed 001)"].item() == pytest.approx(0.922)


def test_finished_checkpoints_are_reloaded(smoke_run: tuple[pipe.CategoryRun, Path]) -> None:
    """Outside the smoke profile a matching finished checkpoint is loaded, not retrained."""
    run, out = smoke_run
    s = pipe.settings_for("smoke")
    again = pipe.run_category(run.split, True, s, profile="cpu", device=torch.device("cpu"),
                              results_dir=out)
    assert not again.ae_history.trained
    assert not again.gan.gan_history.trained and not again.gan.encoder_history.trained
    # weights and BatchNorm statistics (adapted during encoder training, kept in encoder.pt)
    first, second = run.gan.generator.state_dict(), again.gan.generator.state_dict()
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value.cpu(), second[key].cpu()), key


def test_encoder_gen_bn_modes(smoke_run: tuple[pipe.CategoryRun, Path]) -> None:
    """'batch' adapts only the generator's BatchNorm statistics; its weights stay those of step 1."""
    run, out = smoke_run
    ckpt = out / pipe.NOTEBOOK / "checkpoints" / "mvtec-synthetic-bottle" / "gan.pt"
    gan_state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    gen_state = run.gan.generator.state_dict()
    means = [k for k in gen_state if k.endswith("running_mean")]
    assert means and any(not torch.equal(gen_state[k].cpu(), gan_state[f"generator.{k}"]) for k in means)
    for key, value in gen_state.items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(value.cpu(), gan_state[f"generator.{key}"]), key
    with pytest.raises(pipe.ConfigError, match="encoder_gen_bn"):
        pipe.settings_for("smoke", encoder_gen_bn="sometimes")


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (KIT / "bottle").is_dir(), reason="real-data dev kit not present")
def test_real_bottle_without_masks_gives_null_pixel_metrics(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    s = pipe.settings_for("smoke", image_size=16, gan_image_size=16, gan_epochs=1)
    with pytest.warns(UserWarning, match="ground_truth"):
        split, synthetic = pipe.load_category(KIT, "bottle", s)
    assert not synthetic and not split.has_masks
    run = pipe.run_category(split, synthetic, s, profile="smoke", device=torch.device("cpu"),
                            results_dir=tmp_path)
    for res in (run.ae, run.fanogan):
        rec = json.loads(res.results_path.read_text())
        assert rec["synthetic"] is False
        assert rec["image_auroc"] is not None
        assert rec["pixel_auroc"] is None and rec["aupro"] is None and rec["pixel_f1"] is None
        assert "oracle_image_f1" in rec["params"] and "oracle_pixel_f1" not in rec["params"]
