"""Tests for the notebook-04 pipeline (f-AnoGAN vs autoencoder) on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlib import experiment, metrics, results, threshold_rules
from adlib.config import SettingsError
from adlib.data.types import DataError
from adlib.pipelines import fanogan_views as views
from adlib.pipelines import fanogan_vs_ae as pipe

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec"


def test_resolve_categories() -> None:
    # synthetic: the seed's two stand-ins; a real folder: only CATEGORY (it may hold no carpet)
    assert pipe.resolve_categories("bottle") == ["bottle", "carpet"]
    assert pipe.resolve_categories("carpet") == ["carpet", "bottle"]
    assert pipe.resolve_categories("bottle", data_root="/data/mvtec") == ["bottle"]
    assert pipe.resolve_categories("bottle", ["bottle", "carpet"], data_root="/x") == ["bottle", "carpet"]
    # papermill -p CATEGORY transistor: only the named category runs
    assert pipe.resolve_categories("transistor", ["bottle", "carpet"]) == ["transistor"]
    assert pipe.resolve_categories("carpet", "['bottle', 'carpet']") == ["carpet", "bottle"]  # -p text
    for bad in ([], "bottle", "[1]", ["bottle", ""]):
        with pytest.raises(SettingsError, match="CATEGORIES"):
            pipe.resolve_categories("bottle", bad)
    with pytest.raises(SettingsError, match="CATEGORY"):
        pipe.resolve_categories("")


def test_settings_overrides_and_errors() -> None:
    cfg = pipe.settings("cpu", {"image_size": 64, "epochs": None, "gan_epochs": "7"})
    assert cfg["image_size"] == 64 and cfg["epochs"] == pipe.PROFILES["cpu"]["epochs"]
    assert cfg["gan_epochs"] == 7  # papermill text parsed to the profile's type
    paper = pipe.settings("paper")
    assert (paper["image_size"], paper["epochs"], paper["ae_latent"], paper["ae_lr"]) == (256, 300, 1024, 1e-3)
    assert (paper["gan_image_size"], paper["latent_dim"], paper["gan_batch"], paper["gan_lr"],
            paper["n_critic"], paper["gan_epochs"], paper["encoder_epochs"]) == (64, 100, 32, 2e-4, 5, 1500, 200)
    refused = [({"epochs": 0}, "EPOCHS"), ({"encoder_epochs": 0}, "ENCODER_EPOCHS"),
               ({"image_size": 100}, "IMAGE_SIZE"), ({"gan_image_size": 4}, "GAN_IMAGE_SIZE"),
               ({"gan_epochs": "[50]"}, "GAN_EPOCHS"), ({"image_szie": 64}, "Unknown setting"),
               ({"n_critic": 0}, "n_critic"), ({"encoder_gen_bn": "sometimes"}, "encoder_gen_bn")]
    for overrides, name in refused:
        with pytest.raises(SettingsError, match=name):
            pipe.settings("cpu", overrides)
    assert set(pipe.PARAMETERS) <= set(pipe.PROFILES["cpu"])
    assert all(set(p) == set(pipe.PROFILES["cpu"]) for p in pipe.PROFILES.values())


def test_missing_data_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        pipe.load(pipe.settings("smoke"), data_root=tmp_path, category="bottle", progress=False)


@pytest.fixture(scope="module")
def data() -> pipe.Data:
    return pipe.load(pipe.settings("smoke"), category="bottle", progress=False)


def test_augmentation_is_flip_only_train_val_test_apart(data: pipe.Data) -> None:
    cfg = pipe.settings("smoke")
    for sets, size in ((data.ae, cfg["image_size"]), (data.gan, cfg["gan_image_size"])):
        aug = sets.train.augment
        assert aug is not None and aug.hflip == 0.5 and aug.vflip == 0 and not aug.rot90
        assert sets.val.augment is None and sets.test.augment is None
        assert sets.test[0]["image"].shape[-1] == size and sets.test.with_masks
        train_paths = {s.path for s in sets.train.samples}
        assert not train_paths & {s.path for s in sets.val.samples}
        assert not train_paths & {s.path for s in sets.test.samples}
        assert len(sets.train) + len(sets.val) == len(data.split.train) and len(sets.val) >= 1


def test_spec_stages(data: pipe.Data) -> None:
    cfg = pipe.settings("smoke")
    ae = pipe.spec(data, cfg, "ae-256")
    gan = pipe.spec(data, cfg, "f-anogan")  # the first stage by default
    assert ae.name == "ae-256-mvtec-bottle" and gan.name == "f-anogan-gan-mvtec-bottle"
    assert set(gan.optimizer) == {"critic", "generator"} and gan.epochs == cfg["gan_epochs"]
    # same seed, same initial weights (the benchmark and the notebook train the same network)
    again = pipe.spec(data, cfg, "f-anogan", stage="gan", seed=data.seed)
    for a, b in zip(gan.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)
    enc = pipe.spec(data, cfg, "f-anogan", stage="encoder")  # an untrained GAN when none is given
    assert enc.name == "f-anogan-encoder-mvtec-bottle"
    frozen = [p for k, p in enc.model.named_parameters() if not k.startswith("encoder.")]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert {id(p) for g in enc.optimizer.param_groups for p in g["params"]} == \
        {id(p) for p in enc.model["encoder"].parameters()}
    batch = next(iter(enc.loader))
    ctx = type("Ctx", (), {"step": 0, "optimizers": {}})()
    assert enc.step_fn(enc.model, batch, ctx).ndim == 0  # a loss tensor for fit's one optimizer
    with pytest.raises(SettingsError, match="stage"):
        pipe.spec(data, cfg, "f-anogan", stage="critic")
    with pytest.raises(SettingsError, match="variant"):
        pipe.spec(data, cfg, "vae")


@pytest.fixture(scope="module")
def smoke_run(data: pipe.Data, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("results")
    cfg = pipe.settings("smoke")
    run = experiment.run_id(0, cfg, data_root=None, category="bottle")
    trained, evals, paths = {}, {}, {}
    for variant in pipe.VARIANTS:
        trained[variant] = pipe.train(data, cfg, variant, results_dir=out, run=run, force=True, progress=False)
        evals[variant] = pipe.evaluate(trained[variant], data, cfg)
        paths[variant] = pipe.save(evals[variant], trained[variant], data, cfg, results_dir=out,
                                   profile="smoke", seed=0, run=run)
    return {"out": out, "run": run, "cfg": cfg, "trained": trained, "evals": evals, "paths": paths}


def test_smoke_run_writes_guide_results(smoke_run, data: pipe.Data) -> None:
    for method in pipe.VARIANTS:
        (path,) = smoke_run["paths"][method]
        assert path.name == f"{method}-mvtec-bottle-{smoke_run['run']}.json"
        rec = json.loads(path.read_text())
        assert set(results.RESULT_KEYS) <= set(rec) and rec["run_id"] == smoke_run["run"]
        assert rec["profile"] == "smoke" and rec["synthetic"] is True and rec["method"] == method
        assert rec["threshold_source"].startswith("normal-validation")
        assert 0.0 <= rec["image_auroc"] <= 1.0 and rec["pixel_auroc"] is not None  # synthetic has masks
        assert rec["train_seconds"] == pytest.approx(smoke_run["trained"][method].train_seconds)
        scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
        assert list(scores.columns) == ["path", "label", "defect", "score"]
        assert len(scores) == len(data.split.test) and set(scores["label"]) == {0, 1}
        # honest and oracle thresholds for notebook 05, under the names it reads
        params, (ev,) = rec["params"], smoke_run["evals"][method]
        assert params["image_threshold"] == pytest.approx(ev.image_threshold.value)
        assert params["image_threshold_source"].startswith("normal-validation")
        assert params["pixel_quantile"] == pipe.PIXEL_QUANTILE
        # the pixel threshold is the auto rule's pick, refitted here from the validation maps alone
        spec = threshold_rules.RuleSpec.for_maps(np.shape(ev.val_maps), rate=1 - pipe.PIXEL_QUANTILE)
        fitted, choice = threshold_rules.all_thresholds(np.asarray(ev.val_maps), spec)
        assert params["threshold_rule_auto"] == choice.rule
        assert rec["threshold"] == pytest.approx(fitted[choice.rule].value, rel=1e-5)
        labels = scores["label"].to_numpy()
        f1 = metrics.image_prf(scores["score"].to_numpy(), labels, params["oracle_image_threshold"]).f1
        assert params["oracle_image_f1"] == pytest.approx(f1) and 0.0 < f1 <= 1.0
        best_f1 = max(metrics.image_prf(scores["score"].to_numpy(), labels, t).f1
                      for t in scores["score"])  # no test-score threshold beats the oracle
        assert params["oracle_image_f1"] >= best_f1 - 1e-9 and params["oracle_image_f1"] >= ev.image_f1
        assert 0.0 < params["oracle_pixel_f1"] <= 1.0 and params["oracle_pixel_f1"] >= rec["pixel_f1"]
        shape = data.datasets(method).test[0]["image"].shape[-2:]
        assert ev.maps.shape == (len(data.split.test), *shape) and ev.val_maps.shape[1:] == shape


def test_f_anogan_score_is_a_of_x(smoke_run, data: pipe.Data) -> None:
    """The results' score is A(x) = image residual + kappa * critic-feature residual, on [-1, 1]."""
    tr, (ev,) = smoke_run["trained"]["f-anogan"], smoke_run["evals"]["f-anogan"]
    x = pipe.normalise(pipe.stack(data.gan.test, 4))
    with torch.no_grad():
        recon = tr.generator(tr.encoder(x))
        a = ((x - recon) ** 2).flatten(1).mean(1) + smoke_run["cfg"]["kappa"] * (
            (tr.critic.features(x) - tr.critic.features(recon)) ** 2).mean(1)
    np.testing.assert_allclose(a.numpy(), ev.scores[:4], rtol=1e-5)


def test_smoke_run_gan_schedule_and_views(smoke_run, data: pipe.Data) -> None:
    tr = smoke_run["trained"]["f-anogan"]
    assert set(tr.stages) == {"gan", "encoder"}
    assert tr.train_seconds == pytest.approx(sum(t.train_seconds for t in tr.stages.values()))
    steps = tr.stages["gan"].history.to_frame("step")
    n_critic = pipe.PROFILES["smoke"]["n_critic"]
    assert steps["critic_loss"].notna().all()
    with_gen = steps.loc[steps["generator_loss"].notna(), "step"].tolist()
    assert with_gen and all((s + 1) % n_critic == 0 for s in with_gen)
    assert {"wasserstein", "gp"} <= set(steps.columns)
    assert len(tr.sample_grids) == pipe.PROFILES["smoke"]["gan_epochs"]
    assert all(p.is_file() for p in tr.sample_grids)
    assert tr.sample_grids[0].parent.parent == tr.stages["gan"].checkpoint.with_suffix("")
    images, titles = views.snapshot_images(tr)
    assert len(images) == len(titles) and titles[-1] == f"epoch {pipe.PROFILES['smoke']['gan_epochs']}"
    checks = views.encoder_checks(tr, data, n=2)
    assert checks["x"].shape == checks["x_recon"].shape == checks["g_cycle"].shape
    diag = views.gan_diagnostics(tr, data, n=8)
    assert diag["diversity"] > 0 and diag["val_image_residual"] > 0
    table = views.comparison_table({"bottle": data}, {"bottle": smoke_run["trained"]},
                                   {"bottle": {m: e[0] for m, e in smoke_run["evals"].items()}})
    assert table.loc[table["method"] == "f-anogan", "AUROC (seed 001)"].item() == pytest.approx(0.922)
    assert table.loc[table["method"] == "ae-256", "AUROC (seed 001)"].item() == pytest.approx(0.846)
    (ev,) = smoke_run["evals"]["ae-256"]
    decisions = views.decision_table(ev)
    assert decisions["threshold source"].iloc[0].startswith("normal-validation")
    assert decisions["F1"].iloc[1] >= decisions["F1"].iloc[0]  # the oracle row
    shown = views.examples(smoke_run["trained"]["ae-256"], data, smoke_run["cfg"], ev)
    assert [ev.defects[i] for i in views.example_rows(ev)][0] == "good"
    assert shown["images"].shape == shown["recons"].shape and len(shown["titles"]) == len(shown["images"])


def test_finished_checkpoints_are_reused_exactly(smoke_run, data: pipe.Data) -> None:
    """A matching finished checkpoint is loaded, not retrained: same metrics, same train_seconds."""
    cfg, out, run = smoke_run["cfg"], smoke_run["out"], smoke_run["run"]
    for variant in pipe.VARIANTS:
        first = smoke_run["trained"][variant]
        again = pipe.train(data, cfg, variant, results_dir=out, run=run, force=False, progress=False)
        assert again.reused and not first.reused and again.train_seconds == first.train_seconds
        (ev,), (ev0,) = pipe.evaluate(again, data, cfg), smoke_run["evals"][variant]
        assert ev.metrics == ev0.metrics and np.array_equal(ev.scores, ev0.scores)
    # weights and BatchNorm statistics (adapted during encoder training, kept in its checkpoint)
    first_gen, second_gen = smoke_run["trained"]["f-anogan"].generator.state_dict(), again.generator.state_dict()
    assert first_gen.keys() == second_gen.keys()
    for key, value in first_gen.items():
        assert torch.equal(value.cpu(), second_gen[key].cpu()), key


def test_encoder_gen_bn_batch_adapts_only_statistics(smoke_run) -> None:
    """'batch' adapts only the generator's BatchNorm statistics; its weights stay those of step 1."""
    tr = smoke_run["trained"]["f-anogan"]
    gan_state = torch.load(tr.stages["gan"].checkpoint, map_location="cpu", weights_only=False)["model"]
    gen_state = tr.generator.state_dict()
    means = [k for k in gen_state if k.endswith("running_mean")]
    assert means and any(not torch.equal(gen_state[k].cpu(), gan_state[f"generator.{k}"]) for k in means)
    for key, value in gen_state.items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(value.cpu(), gan_state[f"generator.{key}"]), key


needs_kit = pytest.mark.skipif(not (KIT / "bottle").is_dir(), reason="real-data dev kit not present")


@pytest.mark.realdata
@needs_kit
def test_real_kit_categories_are_the_category_only() -> None:
    """The kit holds only bottle: with a DATA_ROOT, CATEGORIES must not default to the seed's two."""
    cfg = pipe.settings("smoke")
    assert not (KIT / "carpet").exists()
    assert pipe.resolve_categories("bottle", None, data_root=KIT) == ["bottle"]
    assert experiment.run_id(0, cfg, data_root=KIT, category="bottle") != \
        experiment.run_id(0, cfg, data_root=None, category="bottle")


@pytest.mark.realdata
@pytest.mark.slow
@needs_kit
def test_real_bottle_without_masks_gives_null_pixel_metrics(tmp_path: Path) -> None:
    cfg = pipe.settings("smoke", {"image_size": 16, "gan_image_size": 16, "gan_epochs": 1})
    with pytest.warns(UserWarning, match="ground_truth"):
        data = pipe.load(cfg, data_root=KIT, category="bottle", progress=False)
    assert not data.synthetic and not data.split.has_masks and not data.gan.test.with_masks
    run = experiment.run_id(0, cfg, data_root=KIT, category="bottle")
    torch.set_num_threads(1)
    tr = pipe.train(data, cfg, "f-anogan", results_dir=tmp_path, run=run, force=True, progress=False)
    (path,) = pipe.save(pipe.evaluate(tr, data, cfg), tr, data, cfg, results_dir=tmp_path,
                        profile="smoke", seed=0, run=run)
    rec = json.loads(path.read_text())
    assert rec["synthetic"] is False and rec["image_auroc"] is not None
    assert rec["pixel_auroc"] is None and rec["aupro"] is None and rec["pixel_f1"] is None
    assert "oracle_image_f1" in rec["params"] and rec["params"]["oracle_pixel_f1"] is None
