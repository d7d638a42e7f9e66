"""Tests for the notebook-03 pipeline (SEM patches, AEs + denoiser) on the tiny synthetic set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from adlib import bootstrap as boot
from adlib import error_analysis, maps, results
from adlib.config import SettingsError
from adlib.data.types import DataError
from adlib.pipelines import sem_claims, sem_errors
from adlib.pipelines import sem_patches as P
from adlib.pipelines import sem_views as views

matplotlib.use("Agg")
RUN = "s0-abc123"
TINY = {"n_train": 64, "max_val_patches": 32, "den_depth": 2, "depth_study": [1, 2],
        "den_width": 4, "base": 4, "latent_dim": 8}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the test machine is shared


@pytest.fixture(scope="module")
def cfg() -> dict:
    return P.settings("smoke", TINY)


@pytest.fixture(scope="module")
def data(cfg: dict) -> P.Data:
    torch.set_num_threads(1)
    return P.load(cfg, data_root=None, seed=0, progress=False)


@pytest.fixture(scope="module")
def run(data: P.Data, cfg: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The seed's three variants (with the depth study's denoisers) and the SSIM AE, trained,
    evaluated and saved."""
    root = tmp_path_factory.mktemp("results")
    trained = {v: P.train(data, cfg, v, results_dir=root, run=RUN, force=True, progress=False,
                          depths=cfg["depth_study"]) for v in P.ALL_VARIANTS}
    evals = [ev for v in P.ALL_VARIANTS for ev in P.evaluate(trained[v], data, cfg)]
    paths = P.save(evals, trained, data, cfg, results_dir=root, profile="smoke", seed=0, run=RUN)
    return {"root": root, "trained": trained, "evals": evals, "paths": paths}


def test_profiles_and_parameters() -> None:
    keys = {name: set(cfg) for name, cfg in P.PROFILES.items()}
    assert set(keys) == {"smoke", "cpu", "paper"}
    assert keys["smoke"] == keys["cpu"] == keys["paper"]
    assert set(P.PARAMETERS) <= keys["smoke"] and P.PARAMETERS["epochs"] == "EPOCHS"
    assert all(cfg["image_size"] == 32 for cfg in P.PROFILES.values())  # the seed's patch size
    assert P.PROFILES["paper"]["den_depth"] == 20 and 10 in P.PROFILES["cpu"]["depth_study"]
    assert P.VARIANTS == ("sae", "dae", "cvae") and P.ALL_VARIANTS == (*P.VARIANTS, "ssim-ae")
    assert all(cfg["ssim_window"] % 2 == 1 for cfg in P.PROFILES.values())


@pytest.mark.parametrize(("overrides", "match"), [
    ({"epochs": 0}, "EPOCHS=0"),  # was a KeyError 'val_mse' after loading the data
    ({"den_epochs": 0}, "DEN_EPOCHS=0"),
    ({"den_depth": 0}, "DENOISER_DEPTH=0"),
    ({"depth_study": [0, 2]}, "DEPTH_STUDY"),
    ({"image_size": 20}, "IMAGE_SIZE=20.*multiple of 8"),
    ({"stride": "[16]"}, "STRIDE"),
    ({"threshold_q": 95}, "THRESHOLD_Q=95"),
    ({"beta": -1}, "CVAE_BETA"),
    ({"synthetic_size": "huge"}, "SYNTHETIC_SIZE"),
    ({"latent_size": 8}, "Unknown setting"),
    ({"ssim_window": 8}, "SSIM_WINDOW=8"),
    ({"ssim_window": 33}, "SSIM_WINDOW=33"),
])
def test_settings_refuse_bad_values(overrides: dict, match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        P.settings("smoke", overrides)


def test_settings_parse_text_and_keep_none() -> None:
    cfg = P.settings("cpu", {"depth_study": "[5, 10]", "stride": "16", "epochs": None})
    assert cfg["depth_study"] == [5, 10] and cfg["stride"] == 16
    assert cfg["epochs"] == P.PROFILES["cpu"]["epochs"]


def test_bad_data_fails_before_training(tmp_path: Path, cfg: dict) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "missing")):
        P.load(cfg, data_root=tmp_path / "missing", progress=False)
    with pytest.raises(SettingsError, match="CATEGORY"):
        P.load(cfg, data_root=None, category="hazelnut", progress=False)


def test_patches_and_splits(data: P.Data) -> None:
    p = data.patches
    assert p.train.shape[1:3] == (32, 32) and len(p.train) == 64
    assert p.test.shape[1:3] == (32, 32) and 0 < len(data.val) <= 32
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
    defects = np.array(data.patch_defects())
    assert set(defects[p.test_labels == 0]) == {"good"} and "good" not in set(defects[p.test_labels == 1])


def test_scores_and_stitching(data: P.Data) -> None:
    x = np.full((2, 1, 4, 4), 0.5, np.float32)
    sc = P.Stages(x=x, recon=x - 0.1, denoised=x, mask=np.zeros_like(x)).scores()
    np.testing.assert_allclose(sc["rec"], 0.01, rtol=1e-5)
    np.testing.assert_allclose(sc["smooth"], 0.0)
    np.testing.assert_allclose(sc["feature"], 0.25)
    maps = P.stitch(data, np.full(len(data.patches.test), 3.0))
    assert [m.shape for m in maps] == [tuple(s) for s in data.image_shapes]
    assert all(np.allclose(m, 3.0) for m in maps)


def test_spec_is_a_train_spec_with_a_three_argument_step(data: P.Data, cfg: dict) -> None:
    spec = P.spec(data, cfg, "cvae")
    assert spec.name == "cvae-sem" and spec.epochs == cfg["epochs"] and spec.model.variational
    batch = next(iter(spec.loader))
    loss = spec.step_fn(spec.model, batch, None)
    assert loss.ndim == 0 and torch.isfinite(loss)
    den = P.denoiser_spec(data, cfg, "cvae", spec.model, 3)
    assert den.name == "cvae-denoiser3-sem" and den.model.depth == 3
    assert not any(p.requires_grad for p in spec.model.parameters())  # the AE is frozen
    with pytest.raises(SettingsError, match="Unknown variant"):
        P.spec(data, cfg, "vae")


def test_train_evaluate_save(run: dict, data: P.Data, cfg: dict) -> None:
    trained, evals = run["trained"], run["evals"]
    assert all(set(trained[v].denoisers) == {1, 2} and trained[v].depth == 2 for v in P.VARIANTS)
    assert trained["ssim-ae"].denoisers == {}  # the SSIM AE has no denoiser
    names = sorted(p.name for p in (run["root"] / P.NOTEBOOK / "checkpoints").glob("*.pt"))
    assert names == sorted([f"{v}-{n}sem-{RUN}.pt" for v in P.VARIANTS
                            for n in ("", "denoiser1-", "denoiser2-")] + [f"ssim-ae-sem-{RUN}.pt"])
    methods = [(v, s) for v in P.VARIANTS for s in P.SCORES] + [("ssim-ae", "rec")]
    assert [(ev.kind, ev.score) for ev in evals] == methods
    for ev in evals:
        assert ev.method == f"{ev.kind}-{ev.score}" and len(ev.scores) == len(data.labels)
        # the threshold is the quantile of the VALIDATION scores, not of the test scores
        assert ev.image_threshold.value == pytest.approx(np.quantile(ev.val_scores, cfg["threshold_q"]))
        assert ev.image_threshold.source.startswith("normal-validation")
        assert ev.pixel_threshold == ev.image_threshold  # pixel maps share the patch scale
        assert ev.oracle_image.is_oracle and ev.oracle_image_f1 >= ev.image_f1 - 1e-12
        assert ev.oracle_pixel_f1 >= ev.metrics["pixel_f1"] - 1e-12
        assert ev.maps.shape == (len(data.split.test), *data.image_shapes[0])
        assert 0.0 <= ev.metrics["image_auroc"] <= 1.0 and ev.metrics["pixel_auroc"] is not None
        np.testing.assert_array_equal(ev.predicted_patches(), (ev.scores > ev.image_threshold.value))

    by_name = {p.name: p for p in run["paths"]}
    assert sorted(by_name) == sorted(f"{v}-{s}-sem-nanofibres-{RUN}.json" for v, s in methods)
    assert json.loads(by_name[f"ssim-ae-rec-sem-nanofibres-{RUN}.json"].read_text())["params"][
        "score_definition"] == "mean 1 - SSIM per patch"
    for ev in evals:
        rec = json.loads(by_name[f"{ev.method}-sem-nanofibres-{RUN}.json"].read_text())
        assert list(rec) == [*results.RESULT_KEYS, "model_bundle", "ci95", "bootstrap"] and rec["run_id"] == RUN
        assert (run["paths"][0].parent / rec["model_bundle"]).is_file()
        assert rec["synthetic"] is True and rec["profile"] == "smoke"
        assert rec["threshold_source"].startswith("normal-validation")
        assert rec["params"]["patch_prf_oracle"]["threshold_source"] == "oracle-test"
        assert rec["params"]["patch_prf"]["f1"] == pytest.approx(ev.image_f1)
        t = trained[ev.kind]
        want = t.ae.train_seconds + (0.0 if ev.score == "rec" else t.denoiser.train_seconds)
        assert t.seconds(ev.score) == pytest.approx(want)
        assert rec["train_seconds"] == pytest.approx(want) and want > 0
        scores = pd.read_csv(by_name[f"{ev.method}-sem-nanofibres-{RUN}.json"].with_suffix(".scores.csv"))
        assert len(scores) == len(data.patches.test)  # one row per test patch
        again = results.image_metrics_from_scores(scores)
        assert again["image_auroc"] == pytest.approx(rec["image_auroc"], abs=1e-6)
        _check_intervals(rec, ev)


def _check_intervals(rec: dict, ev: P.PatchEvaluation) -> None:
    """ci95: image keys over test patches (the CSV rows), pixel keys over the stitched test images."""
    ci, meta = rec["ci95"], rec["bootstrap"]
    assert set(ci) == set(boot.CI_KEYS)
    assert (meta["unit"], meta["pixel_unit"], meta["n"]) == ("test patch", "test image", 1000)
    for key, (lo, hi) in ((k, v) for k, v in ci.items() if v is not None):
        assert 0.0 <= lo <= hi <= 1.0, key
    patches = boot.image_ci(ev.scores, ev.labels, threshold=ev.image_threshold.value, n_boot=meta["n"])
    for key in ("image_auroc", "image_aupr", "image_f1"):
        assert ci[key] == pytest.approx(list(patches[key])), key
    lo, hi = ci["image_auroc"]
    assert lo <= rec["image_auroc"] <= hi
    # the pixel keys resample whole test images: the same as bootstrapping the stitched maps
    image_labels = ev.masks.reshape(len(ev.masks), -1).any(axis=1).astype(int)
    assert len(image_labels) == len(ev.image_maps) > 1
    images, _ = boot.evaluation_intervals(
        scores=ev.maps.reshape(len(ev.maps), -1).max(axis=1), labels=image_labels, maps=ev.maps,
        masks=ev.masks, pixel_threshold=ev.pixel_threshold.value, n_boot=meta["n"])
    for key in ("pixel_auroc", "aupro", "pixel_f1", "pixel_precision", "pixel_recall"):
        assert ci[key] == (None if images[key] is None else pytest.approx(list(images[key]))), key
    assert ci["pixel_auroc"][0] < ci["pixel_auroc"][1]  # a real spread, not one resampled row


def test_images_of_different_sizes_get_no_pixel_intervals(run: dict, data: P.Data) -> None:
    """Unequal image sizes: pixel metrics over one row of all pixels, so no pixel intervals."""
    ev = run["evals"][0]
    (h, w), pad = data.image_shapes[0], ((0, 8), (0, 0))
    odd = dataclasses.replace(data, image_shapes=[(h + 8, w), *data.image_shapes[1:]])
    masks = [np.pad(m, pad) if i == 0 else m for i, m in enumerate(data.test_masks())]
    out = P._evaluate_method(odd, ev.kind, ev.score, ev.scores, ev.val_scores, 0.95, masks)
    assert out.maps.shape[0] == 1 and out.metrics["aupro"] is None
    assert set(out.ci95) == {"image_auroc", "image_aupr", "image_f1"}
    assert out.ci95 == {k: ev.ci95[k] for k in out.ci95}  # the patch-level intervals, unchanged
    assert out.bootstrap["unit"] == "test patch" and "pixel_unit" not in out.bootstrap
    assert out.metrics["pixel_auroc"] is not None


def test_second_run_reuses_checkpoints_and_reproduces(run: dict, data: P.Data, cfg: dict) -> None:
    first = run["trained"]["sae"]
    again = P.train(data, cfg, "sae", results_dir=run["root"], run=RUN, progress=False,
                    depths=cfg["depth_study"])
    assert again.reused and not first.reused
    assert again.train_seconds == first.train_seconds > 0  # the stored time, not 0
    for a, b in zip(again.ae.model.parameters(), first.ae.model.parameters(), strict=True):
        assert torch.equal(a, b)
    evals = P.evaluate(again, data, cfg)
    for ev, old in zip(evals, [e for e in run["evals"] if e.kind == "sae"], strict=True):
        assert ev.metrics == old.metrics and np.array_equal(ev.scores, old.scores)


def test_the_three_scores_by_hand(run: dict, data: P.Data, cfg: dict) -> None:
    """The notebook's key idea: the scores and the threshold from their definitions."""
    t = run["trained"]["cvae"]
    ae, den = t.ae.model.eval(), t.denoiser.model.eval()

    def by_hand(patches: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            rec = ae(x)
            mask = sum(head(h) for head, h in zip(den.heads, _features(den, rec), strict=True))
        return {"rec": _msd(x - rec), "smooth": _msd(x - rec - mask), "feature": _msd(x - mask)}

    idx = np.arange(0, len(data.labels), 7)
    ours = by_hand(data.patches.test[idx])
    evals = {ev.score: ev for ev in run["evals"] if ev.kind == "cvae"}
    for score in P.SCORES:
        np.testing.assert_allclose(ours[score], evals[score].scores[idx], rtol=1e-4, atol=1e-8)
    threshold = np.quantile(by_hand(data.val)["feature"], cfg["threshold_q"])
    np.testing.assert_allclose(threshold, evals["feature"].image_threshold.value, rtol=1e-4)


def _features(den: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for conv in den.convs:
        x = torch.relu(conv(x))
        out.append(x)
    return out


def _msd(d: torch.Tensor) -> np.ndarray:
    return (d**2).flatten(1).mean(1).double().numpy()


def test_views(run: dict, data: P.Data) -> None:
    evals, trained = run["evals"], run["trained"]
    table = views.seed_table(evals, "feature")
    assert list(table.index) == ["SAE", "DAE", "CVAE"]
    assert table["seed AUROC"].notna().all()  # the seed's numbers from adlib.published
    assert (table["F1 (oracle threshold)"] >= table["F1"] - 1e-9).all()
    ranking = views.ranking_check(evals, data)
    assert list(ranking.index) == ["SAE", "DAE", "CVAE"]
    assert ranking["AUROC mean x^2 (no model)"].between(0, 1).all()
    assert list(views.pixel_table(evals).index) == [ev.method for ev in evals]
    training = views.training_table(trained)
    assert len(training) == 10 and (training["seconds"] >= 0).all() and not training["reused"].any()
    assert list(views.seed_table(evals, "rec").index) == ["SAE", "DAE", "CVAE", "SSIM-AE"]
    assert np.isnan(views.seed_table(evals, "rec").loc["SSIM-AE", "seed AUROC"])  # not in the seed
    depth = views.depth_study(data, trained)
    assert set(depth.index.get_level_values("model")) == {"SAE", "DAE", "CVAE"}
    assert depth.loc[("SAE", 2), "mask corr. with deepest"] == pytest.approx(1.0)
    assert views.describe(data).loc["test", "patches"] == len(data.patches.test)
    for kind in ("roc", "hist"):
        assert len(views.curves_grid(evals, kind).axes) == 12  # 4 models x 3 scores (2 left blank)
    with pytest.raises(SettingsError):
        views.curves_grid(evals, "bar")
    examples = views.pick_examples(data, 3)
    assert data.labels[examples[0]] == 1 and data.labels[examples[-1]] == 0
    assert len(views.stages_figure(trained, data, int(examples[0])).axes) == 15
    assert len(views.maps_figure(evals, data, ["sae-rec", "dae-feature"]).axes) >= 6
    matplotlib.pyplot.close("all")


def test_baseline_table_is_model_free_and_consistent(data: P.Data) -> None:
    table = views.baseline_table(data)
    assert list(table.index) == ["mean x^2 (raw)", "mean x (per-image normalised)",
                                 "mean x^2 (per-image normalised)", "thickness (shape, no model)"]
    assert table.loc["mean x^2 (raw)", "patch AUROC"] == pytest.approx(views.energy_auroc(data), abs=1e-3)
    auc = table["patch AUROC"]
    np.testing.assert_allclose(table["max(AUROC, 1 - AUROC)"], np.maximum(auc, 1 - auc), atol=1e-3)
    assert table["max(AUROC, 1 - AUROC)"].between(0.5, 1.0).all()


def test_ssim_score_by_hand(run: dict, data: P.Data, cfg: dict) -> None:
    """The SSIM AE's score is the patch mean of 1 - SSIM(x, AE(x)); its threshold from validation."""
    ev = next(e for e in run["evals"] if e.method == "ssim-ae-rec")
    ae = run["trained"]["ssim-ae"].ae.model.eval()
    x = torch.from_numpy(data.patches.test).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        want = (1 - maps.ssim_map(x, ae(x), cfg["ssim_window"])).flatten(1).mean(1).double().numpy()
    np.testing.assert_allclose(ev.scores, want, rtol=1e-4, atol=1e-7)
    assert ev.image_threshold.value == pytest.approx(np.quantile(ev.val_scores, cfg["threshold_q"]))
    assert len(ev.image_maps) == len(data.split.test)  # stitched like the other rows


def _fake(ev: P.PatchEvaluation, auroc: float) -> P.PatchEvaluation:
    return dataclasses.replace(ev, metrics={**ev.metrics, "image_auroc": auroc})


def test_seed_claims_are_computed_from_the_numbers(run: dict, data: P.Data) -> None:
    evals = {ev.method: ev for ev in run["evals"]}
    # made-up AUROCs with known verdicts: the seed's ranking holds, the SSIM AE loses
    fake = {"sae-rec": 0.6, "sae-smooth": 0.7, "sae-feature": 0.75, "dae-rec": 0.6,
            "dae-smooth": 0.7, "dae-feature": 0.8, "cvae-rec": 0.7, "cvae-smooth": 0.72,
            "cvae-feature": 0.65, "ssim-ae-rec": 0.55}
    table = sem_claims.seed_claims([_fake(evals[m], v) for m, v in fake.items()], data)
    assert list(table.columns) == ["claim", "source", "measured", "holds", "data"]
    verdicts = dict(zip(table["claim"], table["holds"], strict=True))
    assert all(v == "holds" for c, v in verdicts.items() if "SSIM" not in c and "10-layer" not in c)
    assert verdicts[next(c for c in verdicts if "SSIM" in c)] == "does not hold"
    assert verdicts[next(c for c in verdicts if "10-layer" in c)] == "not checked"  # no depth table
    assert table["data"].str.contains("synthetic").all()
    fake.update({"dae-feature": 0.5, "ssim-ae-rec": 0.9})  # now DAE + feature is neither best nor better
    table = sem_claims.seed_claims([_fake(evals[m], v) for m, v in fake.items()], data,
                                   views.depth_study(data, run["trained"]))
    verdicts = dict(zip(table["claim"], table["holds"], strict=True))
    assert verdicts[next(c for c in verdicts if "best of the nine" in c)] == "does not hold"
    assert verdicts[next(c for c in verdicts if "SSIM" in c)] == "holds"
    assert verdicts[next(c for c in verdicts if "10-layer" in c)] in ("holds", "does not hold")


def test_error_views_per_patch_and_per_defect(run: dict, data: P.Data) -> None:
    ev = next(e for e in run["evals"] if e.method == "dae-feature")
    view = sem_errors.patch_view(ev, data)
    assert view.maps.shape == view.masks.shape == (len(data.labels), 32, 32)
    table = error_analysis.misclassified(view)
    predicted = ev.scores > ev.image_threshold.value
    assert (table["kind"] == "false positive").sum() == int((predicted & (data.labels == 0)).sum())
    assert (table["kind"] == "false negative").sum() == int((~predicted & (data.labels == 1)).sum())
    fig = error_analysis.error_gallery(view, data.patches.test, max_per_kind=2)
    assert fig.axes
    by_area = error_analysis.detection_by_area(view, sem_errors.PATCH_AREA_EDGES)
    assert by_area["n"].sum() == int(data.labels.sum())
    defects = sem_errors.defect_detection(ev, data)
    n_regions = sum(int(ndimage.label(m)[1]) for m in data.test_masks())
    assert defects["n"].sum() == n_regions and defects["rate"].between(0, 1).all()
    # a threshold below every score detects every defect, one above every score none
    low = dataclasses.replace(ev, image_threshold=dataclasses.replace(ev.image_threshold, value=-1.0))
    high = dataclasses.replace(ev, image_threshold=dataclasses.replace(ev.image_threshold, value=1e9))
    assert (sem_errors.defect_detection(low, data)["rate"] == 1).all()
    assert (sem_errors.defect_detection(high, data)["detected"] == 0).all()
    matplotlib.pyplot.close("all")


def test_brightness_matched_divides_by_equally_bright_normal_patches(run: dict, data: P.Data) -> None:
    ev = next(e for e in run["evals"] if e.method == "sae-rec")
    group = sem_errors.patch_defect_size(data)
    assert set(group) <= {"normal", "small", "large"}
    np.testing.assert_array_equal(group != "normal", data.labels == 1)
    bright = np.asarray(data.patches.test, np.float64).reshape(len(data.labels), -1).mean(axis=1) / 255
    same = dataclasses.replace(ev, method="as-bright", scores=bright)
    tripled = dataclasses.replace(ev, method="tripled", scores=bright * np.where(group == "normal", 1.0, 3.0))
    table = sem_errors.brightness_matched([same, tripled], data)
    assert list(table.index) == ["brightness (no model)", "as-bright", "tripled"]
    for size in ("small", "large"):
        assert (table[(size, "n")] == int((group == size).sum())).all()
        if (group == size).any():
            ratio = table[(size, "x matched normals")]
            assert ratio["as-bright"] == pytest.approx(ratio["brightness (no model)"])
            assert ratio["tripled"] == pytest.approx(3 * ratio["as-bright"])  # same bins, same reference
            assert table.loc["tripled", (size, "AUROC")] >= table.loc["as-bright", (size, "AUROC")]
    # the claim built on it: L2 below equally bright normals, SSIM above -> holds; swapped -> does not
    evals = [dataclasses.replace(ev, method="sae-rec", scores=bright * np.where(group == "normal", 1, 0.5)),
             dataclasses.replace(ev, method="ssim-ae-rec", kind="ssim-ae",
                                 scores=bright * np.where(group == "normal", 1, 2.0))]
    claim = sem_claims._matched_claim(evals, data, "here")
    expected = None if not (group == "large").any() else True
    assert claim.holds is expected
    swapped = sem_claims._matched_claim([dataclasses.replace(evals[0], scores=evals[1].scores),
                                         dataclasses.replace(evals[1], scores=evals[0].scores)], data, "here")
    assert swapped.holds is (None if expected is None else False)
