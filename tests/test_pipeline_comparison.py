"""Notebook 05: comparison tables from results files, and the classical baselines pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adlib import bootstrap, metrics, results
from adlib.config import SettingsError
from adlib.pipelines import baselines as B
from adlib.pipelines import comparison as C
from adlib.pipelines import comparison_stats as S
from adlib.pipelines import comparison_views as V

REPO = Path(__file__).resolve().parents[1]


def _save(root: Path, notebook: str, method: str, dataset: str, category: str, synthetic: bool,
          scores: np.ndarray, labels: np.ndarray, params: dict | None = None,
          pixel_f1: float | None = None, seed: int = 0, created: str | None = None,
          intervals: bool = False, prefix: str = "img") -> Path:
    defects = np.where(labels == 1, "crack", "good")
    frame = pd.DataFrame({"path": [f"{prefix}{i}.png" for i in range(len(labels))], "label": labels,
                          "defect": defects, "score": scores})
    m = dict.fromkeys(results.METRIC_KEYS)
    m.update(results.image_metrics_from_scores(frame))
    thr = src = None
    if pixel_f1 is not None:
        m.update(pixel_f1=pixel_f1, pixel_precision=pixel_f1, pixel_recall=pixel_f1, pixel_auroc=0.8)
        thr, src = 0.5, "normal-validation:max"
    return results.save_results(root, notebook=notebook, method=method, dataset=dataset,
                                category=category, synthetic=synthetic, profile="smoke", seed=seed,
                                metrics=m, scores=frame, threshold=thr, threshold_source=src,
                                params=params or {}, run_id=f"s{seed}-abc123", created=created,
                                **_intervals(scores, labels, intervals))


def _intervals(scores: np.ndarray, labels: np.ndarray, wanted: bool) -> dict:
    if not wanted:
        return {}
    ci, meta = bootstrap.evaluation_intervals(scores=scores, labels=labels, n_boot=300)
    return {"ci95": ci, "bootstrap": meta}


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    labels = np.array([0, 0, 0, 1, 1, 1])
    good = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])       # perfect ranking
    bad = np.array([0.9, 0.2, 0.3, 0.1, 0.8, 0.4])        # poor ranking
    _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "hazelnut", True, good, labels,
          pixel_f1=0.4)
    _save(tmp_path, "04_fanogan_vs_autoencoder", "f-anogan", "mvtec", "bottle", False, bad, labels)
    _save(tmp_path, "02_unet_autoencoder_dagm_rsdd", "unet-ae", "dagm", "Class8", True, good, labels,
          params={"image_threshold": 0.75, "image_threshold_source": "normal-validation:max",
                  "oracle_pixel_f1": 0.6, "oracle_pixel_threshold": 0.3}, pixel_f1=0.2)
    # not a results file: must be skipped, not fatal
    (tmp_path / "02_unet_autoencoder_dagm_rsdd" / "checkpoints").mkdir()
    (tmp_path / "02_unet_autoencoder_dagm_rsdd" / "checkpoints" / "meta.json").write_text("{}")
    return tmp_path


def test_load_comparison_finds_results_and_ignores_other_json(results_dir: Path) -> None:
    c = C.load_comparison(results_dir)
    assert len(c.frame) == 3
    assert set(c.frame["notebook"]) == {"01_hazelnut_autoencoder", "04_fanogan_vs_autoencoder",
                                        "02_unet_autoencoder_dagm_rsdd"}
    assert c.frame.loc[c.frame["method"] == "unet-ae", "oracle_pixel_f1"].item() == 0.6
    assert "01_hazelnut_autoencoder: 1 results file(s)" in c.summary()


def test_empty_or_missing_results_dir(tmp_path: Path) -> None:
    c = C.load_comparison(tmp_path / "nothing-here")
    assert c.frame.empty and C.data_groups(c.frame) == []
    assert "No results files" in c.summary()
    assert C.threshold_table(c.frame).empty
    assert V.roc_target(c.frame) is None


def test_synthetic_and_real_are_separate_tables(results_dir: Path) -> None:
    df = C.load_comparison(results_dir).frame
    assert C.data_groups(df) == [("dagm", True), ("mvtec", False), ("mvtec", True)]
    syn = C.comparison_table(df, "mvtec", True)
    real = C.comparison_table(df, "mvtec", False)
    ours_syn = syn[~syn["source"].str.startswith("PUBLISHED")]
    ours_real = real[~real["source"].str.startswith("PUBLISHED")]
    assert set(ours_syn["data"]) == {"synthetic stand-in"} and list(ours_syn["method"]) == ["conv-ae-l2"]
    assert set(ours_real["data"]) == {"real"} and list(ours_real["method"]) == ["f-anogan"]
    fragments, _ = V.dataset_fragments(df)
    assert [f.name for f in fragments] == ["01_dagm_synthetic", "02_mvtec_real", "03_mvtec_synthetic"]
    assert "SYNTHETIC" in fragments[2].caption and "not comparable" in fragments[2].caption


def test_published_numbers_beside_ours_with_source(results_dir: Path) -> None:
    df = C.load_comparison(results_dir).frame
    table = C.comparison_table(df, "mvtec", False)       # ours: bottle only
    pub = table[table["source"].str.startswith("PUBLISHED")]
    assert set(pub["category"]) == {"bottle"}              # only the categories we ran
    assert set(pub["data"]) == {"real (published)"}
    seeds = pub[~pub["method"].str.contains("paper")]
    assert seeds["source"].str.contains("seed 001").all() and len(seeds) == 2
    paper = pub[pub["method"] == "patchcore-wrn50 (paper)"]   # chapter 06's paper, named as such
    assert paper["source"].str.startswith("PUBLISHED: Roth et al. 2022").all()
    assert paper[["image_auroc", "pixel_auroc", "aupro"]].values.tolist() == [[1.0, 0.986, 0.962]]
    fanogan = pub[pub["method"] == "f-anogan"]
    expected = [r["value"] for r in C.published.PUBLISHED
                if r["category"] == "bottle" and r["method"] == "f-anogan" and r["metric"] == "image_auroc"]
    assert fanogan["image_auroc"].tolist() == expected
    dagm = C.comparison_table(df, "dagm", True)
    assert "f1 (level unstated)" in dagm.columns           # seed 002 does not say pixel or image
    per_defect = C.per_defect_table(df, "mvtec", "hazelnut", True)
    assert per_defect.empty  # no per-defect numbers of ours -> no lonely published rows


def test_threshold_table_honest_vs_oracle(results_dir: Path) -> None:
    t = C.threshold_table(C.load_comparison(results_dir).frame).set_index("method")
    # the image-level oracle is recomputed from the scores CSV for every method
    assert t.loc["conv-ae-l2", "ORACLE image_f1 (test)"] == 1.0
    assert t.loc["f-anogan", "ORACLE image_f1 (test)"] < 1.0
    # honest image threshold only where stored: 0.75 keeps 2 of 3 defective, no false positive
    assert t.loc["unet-ae", "image_f1 (validation thr.)"] == pytest.approx(0.8)
    assert t.loc["unet-ae", "image gap"] == pytest.approx(0.2)
    assert np.isnan(t.loc["conv-ae-l2", "image_f1 (validation thr.)"])
    assert t.loc["conv-ae-l2", "image threshold source"] == "not reported"
    assert t.loc["unet-ae", "pixel gap"] == pytest.approx(0.4)
    assert np.isnan(t.loc["conv-ae-l2", "ORACLE pixel_f1 (test)"])


def test_roc_recomputed_from_scores(results_dir: Path) -> None:
    df = C.load_comparison(results_dir).frame
    curves = V.roc_inputs(df, "mvtec", "hazelnut", True)
    ((labels, scores),) = curves.values()
    row = df[df["method"] == "conv-ae-l2"].iloc[0]
    assert metrics.image_auroc(scores, labels) == pytest.approx(row["image_auroc"])
    assert V.roc_target(df)[2] is False  # ties broken towards real data
    fig = V.metric_heatmap(C.comparison_table(df, "mvtec", True))
    assert fig.axes


def test_write_fragments_replaces_stale_files(results_dir: Path) -> None:
    folder = results_dir / C.FRAGMENT_DIR
    folder.mkdir()
    (folder / "old.html").write_text("stale")
    fragments, _ = V.dataset_fragments(C.load_comparison(results_dir).frame)
    paths = V.write_fragments(results_dir, fragments)
    assert not (folder / "old.html").exists()
    assert sorted(p.name for p in folder.glob("*.html")) == sorted(p.name for p in paths)
    text = paths[0].read_text()
    assert "<table" in text and "caption" in text

    from adlib.report import comparison_fragments

    assert comparison_fragments(results_dir) == sorted(paths)


def test_baseline_params_validated_early() -> None:
    with pytest.raises(SettingsError, match="IMAGE_SIZE"):
        B.settings("smoke", {"image_size": 4})
    with pytest.raises(SettingsError, match="BASELINE_DATASETS"):
        B.settings("smoke", {"targets": "mvtec"})
    assert B.settings("smoke", {"targets": '[["dagm", "Class8"]]'})["targets"] == [["dagm", "Class8"]]
    with pytest.raises(SettingsError):
        B.resolve_targets(None, "mvtec", None, [["sem", "nanofibres"]])
    assert B.resolve_targets("/data", "dagm", "Class8") == [("dagm", "Class8")]
    assert B.resolve_targets(None, "mvtec", "x") == list(B.SYNTHETIC_TARGETS)


def test_baselines_pipeline_on_tiny_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path / "data"))
    cfg = B.settings("smoke")
    loaded = B.load_targets([("mvtec", "bottle")], None, cfg)
    runs = B.run_all(loaded, cfg, profile="smoke", run="s0-0a1b2c", results_dir=tmp_path / "res")
    assert [r.method for r in runs] == list(B.METHODS)
    for run in runs:
        rec = results.load_results(run.results_path)
        assert rec["notebook"] == B.NOTEBOOK and rec["synthetic"] is True
        assert rec["threshold_source"].startswith("normal-validation")
        assert rec["params"]["image_threshold_source"].startswith("normal-validation")
        assert "oracle_image_f1" in rec["params"]
        assert set(rec["per_defect"]) == {s.defect for s in run.data.split.test if s.label}
        assert run.maps.shape == (len(run.data.test), 32, 32)
        # the validation images were held out of training
        assert len(run.data.train) + len(run.data.val) == len(run.data.split.train)
    c = C.load_comparison(tmp_path / "res")
    assert set(c.frame["method"]) == set(B.METHODS)
    assert len(C.threshold_table(c.frame)) == 2
    fig = B.explorer(runs, ["mvtec", "bottle", "patch-pca"], static=True)
    assert fig.axes
    table = B.runs_table(runs)
    assert list(table["method"]) == list(B.METHODS)


def test_seeds_of_one_experiment_are_averaged_with_n(tmp_path: Path) -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    for seed, scores in ((0, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), (1, [0.1, 0.2, 0.8, 0.7, 0.3, 0.9])):
        _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "hazelnut", True,
              np.array(scores), labels, pixel_f1=0.4 + 0.1 * seed, seed=seed)
    df = C.load_comparison(tmp_path).frame
    assert len(df) == 2 and sorted(df["seed"]) == [0, 1]  # two files, nothing overwritten
    agg = C.aggregate_seeds(df)
    aurocs = sorted(df["image_auroc"])
    assert len(agg) == 1 and agg.loc[0, "n"] == 2 and agg.loc[0, "seeds"] == [0, 1]
    assert agg.loc[0, "image_auroc"] == pytest.approx(np.mean(aurocs))
    assert agg.loc[0, "image_auroc_sd"] == pytest.approx(np.std(aurocs, ddof=1))
    table = C.comparison_table(df, "mvtec", True, with_published=False)
    assert list(table["n"]) == [2]
    assert table.loc[0, "pixel_f1"] == f"{0.45:.3f} ± {np.std([0.4, 0.5], ddof=1):.3f}"
    overview = C.overview_table(df)
    assert overview.loc[0, "n"] == 2 and overview.loc[0, "seeds"] == "0, 1"
    fig = V.metric_heatmap(table)  # the heat map reads the mean of "mean ± sd" cells
    assert fig.axes[0].images[0].get_array()[0, 0] == pytest.approx(np.mean(aurocs), abs=5e-4)


def test_results_older_than_the_report_run_are_listed_not_mixed_in(tmp_path: Path) -> None:
    labels = np.array([0, 0, 1, 1])
    _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "hazelnut", True,
          np.array([0.1, 0.2, 0.7, 0.8]), labels, created="2026-01-01T10:00:00Z")
    _save(tmp_path, "04_fanogan_vs_autoencoder", "f-anogan", "mvtec", "bottle", True,
          np.array([0.1, 0.2, 0.7, 0.8]), labels, created="2026-01-02T10:00:00Z")
    everything = C.load_comparison(tmp_path)  # no report marker: every file counts
    assert len(everything.frame) == 2 and everything.older.empty and everything.since is None
    (tmp_path / C.REPORT_RUN_FILE).write_text('{"started": "2026-01-02T00:00:00Z"}')
    current = C.load_comparison(tmp_path)
    assert list(current.frame["method"]) == ["f-anogan"] and current.since == "2026-01-02T00:00:00Z"
    older = C.older_table(current)
    assert list(older["method"]) == ["conv-ae-l2"] and older.loc[0, "created"] == "2026-01-01T10:00:00Z"
    assert "older results file(s)" in current.summary()
    frags = V.build_fragments(current.frame, others_present=True, older=older)
    assert frags[-1].name == "99_older_results_not_shown" and "OLDER" in frags[-1].caption
    assert len(C.load_comparison(tmp_path, since=None).frame) == 2


def test_sweep_examples_parse() -> None:
    from adlib import report

    notebooks = report.discover_notebooks(REPO / "notebooks")
    mvtec = REPO.parent / "shared" / "data" / "mvtec"
    dev = report.load_params(REPO / "params" / "dev_kit.yaml")
    if (REPO.parent / "shared" / "data").is_dir():
        runs = report.plan_runs(notebooks, dev)
        assert any(r.parameters.get("CATEGORY") == "Class8" for r in runs)
    sweep = report.load_params(REPO / "params" / "mvtec_all_categories.yaml")
    assert any(r.get("categories") == "auto" for r in sweep["runs"])
    assert sweep["parameters"] == {}  # DATA_ROOT per run: notebooks 00 and 02 keep their defaults
    if mvtec.is_dir():
        for run in sweep["runs"]:
            run["parameters"]["DATA_ROOT"] = str(mvtec)
        runs = report.plan_runs(notebooks, sweep)
        assert any(r.output_stem == "01_hazelnut_autoencoder-bottle" for r in runs)
        assert all("DATA_ROOT" not in r.parameters for r in runs if r.source.name.startswith("02"))


def _scores(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3 == 0).astype(int)
    return rng.normal(size=n) + shift * labels, labels


def test_cells_show_the_bootstrap_interval(tmp_path: Path) -> None:
    scores, labels = _scores(60, 1.0, 0)
    _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "hazelnut", True, scores, labels,
          intervals=True)
    df = C.load_comparison(tmp_path).frame
    lo, hi = bootstrap.image_ci(scores, labels, n_boot=300)["image_auroc"]
    assert df.loc[0, "image_auroc_lo"] == lo and df.loc[0, "image_auroc_hi"] == hi
    auroc = metrics.image_auroc(scores, labels)
    expected = f"{auroc:.3f} [{lo:.3f}, {hi:.3f}]"
    table = C.comparison_table(df, "mvtec", True, with_published=False)
    assert table.loc[0, "image_auroc"] == expected and lo < auroc < hi
    assert np.isnan(table.loc[0, "pixel_auroc"])  # no maps: no number and no interval
    assert not any(c.endswith(("_lo", "_hi", "_sd")) for c in table.columns)
    assert C.overview_table(df).loc[0, "image_auroc"] == expected
    fig = V.metric_heatmap(table)
    assert fig.axes[0].images[0].get_array()[0, 0] == pytest.approx(auroc, abs=5e-4)
    assert S.leading_number("0.975 ± 0.008 [0.941, 0.996]") == "0.975"


def test_several_seeds_show_mean_sd_and_the_averaged_interval(tmp_path: Path) -> None:
    bounds = []
    for seed in (0, 1):
        scores, labels = _scores(60, 1.0 + seed, seed)
        _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "hazelnut", True, scores, labels,
              seed=seed, intervals=True)
        bounds.append(bootstrap.image_ci(scores, labels, n_boot=300)["image_auroc"])
    df = C.load_comparison(tmp_path).frame
    agg = C.aggregate_seeds(df)
    assert agg.loc[0, "image_auroc_lo"] == pytest.approx(np.mean([b[0] for b in bounds]))
    cell = C.comparison_table(df, "mvtec", True, with_published=False).loc[0, "image_auroc"]
    mean, sd = df["image_auroc"].mean(), df["image_auroc"].std(ddof=1)
    lo, hi = np.mean([b[0] for b in bounds]), np.mean([b[1] for b in bounds])
    assert cell == f"{mean:.3f} ± {sd:.3f} [{lo:.3f}, {hi:.3f}]"


def test_paired_table_a_beats_b_on_the_same_test_images(tmp_path: Path) -> None:
    weak, labels = _scores(90, 0.3, 1)
    strong = weak + 2.5 * labels
    _save(tmp_path, "05_comparison", "variation-model", "mvtec", "bottle", True, weak, labels)
    _save(tmp_path, "05_comparison", "patch-pca", "mvtec", "bottle", True, strong, labels)
    _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "bottle", True, weak.copy(), labels)
    # same dataset, other test images: never paired
    _save(tmp_path, "02_unet_autoencoder_dagm_rsdd", "unet-ae", "mvtec", "bottle", True, strong, labels,
          prefix="other")
    # another data kind: never paired with the synthetic rows
    _save(tmp_path, "04_fanogan_vs_autoencoder", "f-anogan", "mvtec", "bottle", False, strong, labels)
    table = S.paired_table(C.load_comparison(tmp_path).frame, n_boot=400)
    assert len(table) == 3 and set(table["data"]) == {"synthetic stand-in"}
    rows = {(a.split(" ")[0], b.split(" ")[0]): r for (a, b), r in
            zip(zip(table["A"], table["B"], strict=True), table.to_dict("records"), strict=True)}
    best = rows[("patch-pca", "variation-model")]
    assert best["A - B"] == pytest.approx(metrics.image_auroc(strong, labels) - metrics.image_auroc(weak, labels),
                                          abs=1e-3)
    lo, hi = (float(v) for v in best["95 % CI of A - B"].strip("[]").split(", "))
    assert 0 < lo <= best["A - B"] <= hi and best["P(A > B)"] == 1.0 and best["n images"] == 90
    assert ("patch-pca", "conv-ae-l2") in rows            # A is always the better of the two
    same = next(r for k, r in rows.items() if set(k) == {"variation-model", "conv-ae-l2"})
    assert same["A - B"] == 0 and same["P(A > B)"] == 0 and same["95 % CI of A - B"] == "[0.000, 0.000]"
    skipped = table.attrs["skipped"]
    assert len(skipped) == 3 and all("did not score the same test images" in s for s in skipped)
    frags = V.build_fragments(C.load_comparison(tmp_path).frame, others_present=True)
    paired = next(f for f in frags if f.name == V.PAIRED_FRAGMENT)
    assert "paired bootstrap" in paired.caption and "3 pair(s)" in paired.caption
    assert S.paired_table(C.load_comparison(tmp_path / "none").frame).empty


def _rules_params(oracle: float, f1s: dict[str, float], auto: str) -> dict:
    table = {r: {"threshold": 0.1 * i, "source": f"normal-validation:{r}", "pixel_f1": f,
                 "pixel_precision": f, "pixel_recall": f}
             for i, (r, f) in enumerate(f1s.items())}
    table["auto"] = {**table[auto], "source": table[auto]["source"] + " (auto)"}
    return {"threshold_rules": table, "threshold_rule_auto": auto, "oracle_pixel_f1": oracle}


def test_rule_ratio_table_reads_the_rules_from_results_files(tmp_path: Path) -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    f1s = {"quantile": 0.4, "tail": 0.36, "k_sigma": 0.1, "region": 0.2}
    for seed, auto in ((0, "quantile"), (1, "tail")):
        _save(tmp_path, "01_hazelnut_autoencoder", "conv-ae-l2", "mvtec", "hazelnut", True, scores, labels,
              params=_rules_params(0.5, f1s, auto), pixel_f1=f1s[auto], seed=seed)
    _save(tmp_path, "04_fanogan_vs_autoencoder", "f-anogan", "mvtec", "bottle", False, scores, labels)
    df = C.load_comparison(tmp_path).frame
    long = C.rule_rows(df)
    assert set(long["method"]) == {"conv-ae-l2"}  # a file without rules gives no rows
    assert set(long["rule"]) == {"quantile", "tail", "k_sigma", "region", "auto", "results"}
    table = C.rule_ratio_table(df)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["n"] == 2 and row["ORACLE pixel_f1"] == 0.5
    assert row["quantile"] == pytest.approx(0.8) and row["region"] == pytest.approx(0.4)
    assert row["results"] == pytest.approx((0.8 + 0.72) / 2)  # mean over the two seeds
    assert row["auto picks"] == "quantile, tail" and row["meets 0.7"]
    low = C.rule_ratio_table(df, target=0.9).iloc[0]
    assert not low["meets 0.9"]
    frags = V.build_fragments(df, others_present=True)
    rules = [f for f in frags if f.name.endswith("_thresholds_rules_vs_oracle")]
    assert len(rules) == 1 and "ORACLE" in rules[0].caption


def test_rule_ratio_table_empty_without_rules(results_dir: Path) -> None:
    table = C.rule_ratio_table(C.load_comparison(results_dir).frame)
    assert table.empty and "results" in table.columns
